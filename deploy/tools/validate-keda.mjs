// Validates the optional KEDA objects (deploy/k8s/optional/*.yaml) with the schemas of the
// npm package @kubernetes-models/keda. Run by deploy/validate.sh when NODE_TOOLS points at
// a node_modules folder holding @kubernetes-models/keda and js-yaml (installed outside the
// repository: see deploy/README.md "How these files were validated").
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const tools = process.env.NODE_TOOLS;
const require = createRequire(path.join(tools, "package.json"));
const yaml = require("js-yaml");
const keda = await import(path.join(tools, "node_modules/@kubernetes-models/keda/keda.sh/v1alpha1/index.js"));

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc) continue;
    const Model = keda[doc.kind];
    if (!Model || !doc.apiVersion.startsWith("keda.sh/")) {
      console.log(`SKIP ${file}: ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new Model(doc).validate();
      console.log(`OK   ${file}: ${doc.kind} ${doc.metadata.name}`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${file}: ${doc.kind} ${doc.metadata?.name}: ${err.message}`);
    }
  }
}
process.exit(failed ? 1 : 0);
