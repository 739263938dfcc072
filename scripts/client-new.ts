/**
 * `npm run client:new -- --id ID [--name NAME]`: a new API client (DESIGN §4.3).
 * Prints the API key once and a ready-to-paste entry for the clients file (the key's hash and a new
 * webhook secret). Writes nothing: the operator decides where the entry goes.
 */
import { parseArgs } from 'node:util';

import { newClientEntry } from '../src/auth/clients.js';

const usage = `Usage: npm run client:new -- --id ID [--name NAME]

  --id ID      client id: 1 to 64 letters, digits, "_" or "-" (unique in the clients file)
  --name NAME  optional display name`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${usage}\n`);
  process.exit(2);
}

let id: string | undefined;
let name: string | undefined;
try {
  const { values } = parseArgs({
    options: { id: { type: 'string' }, name: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  id = values.id;
  name = values.name;
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}

if (id === undefined) fail('Missing --id.');
let created: ReturnType<typeof newClientEntry>;
try {
  created = newClientEntry({ id, name: name === '' ? undefined : name });
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}

process.stdout.write(
  [
    `New client "${id}".`,
    '',
    'API key (shown only this once: hand it to the client; the gateway stores only its SHA-256):',
    `  ${created.apiKey}`,
    '',
    'Add this entry to the "clients" array of the clients file (CLIENTS_FILE, default data/clients.json),',
    'then restart the gateway. It holds the webhook secret the client verifies webhooks with:',
    JSON.stringify(created.entry, null, 2),
    '',
  ].join('\n'),
);
