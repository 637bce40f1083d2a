/** A helper thread of the threaded cluster compressor: compresses its share of each batch. */
import { workerData } from 'node:worker_threads';
import { CONTROL, workOnBatch, type CompressWorkerData, type SharedBatch } from './cluster-compressor.ts';

const data = workerData as CompressWorkerData;
const batch: SharedBatch = {
  control: new Int32Array(data.control),
  input: new Uint8Array(data.input),
  output: new Uint8Array(data.output),
  lengths: new Int32Array(data.lengths),
};

Atomics.add(batch.control, CONTROL.ready, 1);
Atomics.notify(batch.control, CONTROL.ready);
let generation = Atomics.load(batch.control, CONTROL.generation);
// A batch under way is joined: its claims carry its generation, so a batch already over gives nothing to take.
if (generation !== 0) workOnBatch(batch, data.type, data.clusterBytes, generation);
// The stop flag is looked at before each wait too: a helper that starts late, after the caller has
// stopped, must not wait for a batch that never comes.
while (Atomics.load(batch.control, CONTROL.stop) === 0) {
  Atomics.wait(batch.control, CONTROL.generation, generation);
  generation = Atomics.load(batch.control, CONTROL.generation);
  if (Atomics.load(batch.control, CONTROL.stop) !== 0) break;
  workOnBatch(batch, data.type, data.clusterBytes, generation);
}
