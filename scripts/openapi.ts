// Writes openapi.yaml from the routes' schemas (`npm run openapi`); a test fails when the committed file is stale.
import { writeFile } from 'node:fs/promises';

import { renderOpenapiYaml } from '../src/openapi-document.js';

await writeFile(new URL('../openapi.yaml', import.meta.url), await renderOpenapiYaml());
process.stdout.write('wrote openapi.yaml\n');
