import { buildGateway } from './app.js';
import { createClientRegistry } from './auth/clients.js';
import { loadConfig } from './config.js';

/** Builds the app offline (in-memory store, no clients, no listening) and renders its OpenAPI document as YAML. */
export async function renderOpenapiYaml(): Promise<string> {
  const loaded = loadConfig({ DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent' });
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  const gateway = await buildGateway({ config: loaded.config, clients: createClientRegistry({ clients: [] }), logger: false });
  try {
    await gateway.app.ready();
    return gateway.app.swagger({ yaml: true });
  } finally {
    await gateway.close();
  }
}
