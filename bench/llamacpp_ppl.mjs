// Teacher-forced perplexity (and tokenization) with a real llama.cpp, through node-llama-cpp.
//
// Usage: node bench/llamacpp_ppl.mjs JOB.json  ->  one JSON object on stdout.
// JOB: {"model": "x.gguf", "contextSize": 2048, "threads": 2, "windows": [[id, id, ...], ...],
//       "scoreFrom": [k, ...], "tokenize": ["text", ...]}   (all but model optional)
// Output: {"contextSize": N, "windows": [{"nll": sum of -ln p over the scored tokens, "tokens": n}, ...],
//          "tokenized": [[id, ...], ...]}
// Window w scores its tokens k.. (k = scoreFrom[w], default 1): probabilities are requested only
// where they are needed, since building the per-token probability map over the vocabulary is the
// slow part.
// Token ids come from Python, so both sides score exactly the same tokens. Install once with
// `npm i -E --no-save --no-package-lock node-llama-cpp@3.21.1` in the repository root (node_modules/
// is git-ignored); the prebuilt CPU binaries are used, nothing is compiled.
import { readFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: job.model });
const out = { windows: [], tokenized: [] };

for (const text of job.tokenize ?? []) {
  out.tokenized.push(Array.from(model.tokenize(text, false)));
}

if ((job.windows ?? []).length > 0) {
  const context = await model.createContext({
    contextSize: job.contextSize,
    batchSize: Math.min(job.contextSize, 512),
    threads: job.threads ?? 0,
  });
  out.contextSize = context.contextSize;
  const sequence = context.getSequence();
  for (const [w, tokens] of job.windows.entries()) {
    await sequence.clearHistory();
    const last = tokens.length - 1;
    const first = Math.max(1, job.scoreFrom?.[w] ?? 1) - 1; // position whose output predicts token `first + 1`
    const input = tokens.map((t, i) => (i >= first && i < last ? [t, { generateNext: { probabilities: true } }] : t));
    const results = await sequence.controlledEvaluate(input);
    let nll = 0;
    for (let i = first; i < last; i++) {
      const p = results[i]?.next?.probabilities?.get(tokens[i + 1]) ?? 0;
      nll += -Math.log(Math.max(p, 1e-30)); // a token below float resolution counts as p = 1e-30
    }
    out.windows.push({ nll, tokens: last - first });
  }
  await context.dispose();
}
await model.dispose();
process.stdout.write(JSON.stringify(out) + "\n");
