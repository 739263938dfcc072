/**
 * Waits for something only real I/O makes true (sockets, a child process), checking every `everyMs`. The bound
 * turns a hang into a failure that names what never happened; it is not a speed assertion. Timers the gateway
 * owns are never waited for this way: tests drive those with ManualClock/ManualTimers.
 */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
