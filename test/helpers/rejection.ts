import { UpstreamError } from '../../src/upstream/types.js';

/** The UpstreamError a call fails with; fails the test when it resolves or throws anything else. */
export async function upstreamRejection(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof UpstreamError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}
