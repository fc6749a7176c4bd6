// The Node side of benchmarks/daemon.py: CONCURRENCY callers of TARGET through the daemon at
// SOCKET for SECONDS, after a warm-up; prints {calls_per_s, p50_us, p99_us} as JSON.
import { connect } from "../clients/node/jesus.mjs";

const [socket, target, concurrency, seconds, request] = process.argv.slice(2);
const data = JSON.parse(request);
const client = await connect(socket);

async function run(duration, latencies) {
  const stopAt = performance.now() + duration * 1000;
  const worker = async () => {
    while (performance.now() < stopAt) {
      const started = performance.now();
      await client.call(target, data);
      if (latencies) latencies.push(performance.now() - started);
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: Number(concurrency) }, worker));
  return (performance.now() - began) / 1000;
}

await run(0.3, null);
const latencies = [];
const elapsed = await run(Number(seconds), latencies);
latencies.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    calls_per_s: latencies.length / elapsed,
    p50_us: latencies[Math.floor(latencies.length / 2)] * 1000,
    p99_us: latencies[Math.floor(latencies.length * 0.99)] * 1000,
  }),
);
await client.close();
