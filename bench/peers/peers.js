// The same no-op workload as `leasehold bench cycle`, on a peer job queue:
// N jobs are enqueued (not timed), then W workers take and finish them all.
// Prints one JSON object shaped like `leasehold bench --json`; per-job
// latency is not measured for peers (p50_us and p99_us are 0): only the
// throughput of the whole run is compared.
//
// usage: node peers.js graphile-worker|pg-boss POSTGRES_URL TASKS WORKERS

"use strict";

const [, , which, url, tasksArg, workersArg] = process.argv;
const tasks = Number(tasksArg || 20000);
const workers = Number(workersArg || 8);

function report(name, version, seconds, setupSeconds) {
  return {
    workload: "peer-cycle",
    backend: name,
    version,
    durability: "n/a",
    workers,
    tasks,
    batch: 1,
    ops: tasks,
    seconds,
    ops_per_sec: tasks / seconds,
    p50_us: 0,
    p99_us: 0,
    writes_per_op: 2,
    writes_per_sec: (2 * tasks) / seconds,
    setup_seconds: setupSeconds,
    cpus: require("os").cpus().length,
  };
}

async function graphile() {
  const { run, makeWorkerUtils } = require("graphile-worker");
  const version = require("graphile-worker/package.json").version;
  const setup = process.hrtime.bigint();
  const utils = await makeWorkerUtils({ connectionString: url });
  await utils.migrate();
  for (let i = 0; i < tasks; i += 1000) {
    const specs = [];
    for (let j = i; j < Math.min(tasks, i + 1000); j++) {
      specs.push({ identifier: "noop", payload: { i: j } });
    }
    await utils.addJobs(specs);
  }
  await utils.release();
  const setupSeconds = Number(process.hrtime.bigint() - setup) / 1e9;
  let done = 0;
  let finish;
  const all = new Promise((resolve) => (finish = resolve));
  const start = process.hrtime.bigint();
  const runner = await run({
    connectionString: url,
    concurrency: workers,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new (require("graphile-worker").Logger)(() => () => {}),
    taskList: {
      noop: async () => {
        done++;
        if (done === tasks) finish();
      },
    },
  });
  await all;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await runner.stop();
  return report("graphile-worker", version, seconds, setupSeconds);
}

async function pgboss() {
  const PgBoss = require("pg-boss");
  const version = require("pg-boss/package.json").version;
  const setup = process.hrtime.bigint();
  const boss = new PgBoss({ connectionString: url, max: workers + 2 });
  boss.on("error", (e) => console.error(e));
  await boss.start();
  await boss.createQueue("noop");
  for (let i = 0; i < tasks; i += 1000) {
    const jobs = [];
    for (let j = i; j < Math.min(tasks, i + 1000); j++) {
      jobs.push({ name: "noop", data: { i: j } });
    }
    await boss.insert(jobs);
  }
  const setupSeconds = Number(process.hrtime.bigint() - setup) / 1e9;
  let done = 0;
  let finish;
  const all = new Promise((resolve) => (finish = resolve));
  const start = process.hrtime.bigint();
  // W independent workers. pg-boss 10 waits its polling interval (at least
  // 0.5 s) after EVERY fetch, found jobs or not, so one job per fetch caps a
  // worker at 2 jobs/s; its way to throughput is batchSize. Each worker
  // fetches BATCH (default 100) jobs and runs them one after the other.
  const batchSize = Number(process.env.PGBOSS_BATCH || 100);
  for (let w = 0; w < workers; w++) {
    await boss.work("noop", { batchSize, pollingIntervalSeconds: 0.5 }, async (jobs) => {
      for (const _job of jobs) {
        done++;
        if (done === tasks) finish();
      }
    });
  }
  await all;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await boss.stop({ graceful: false, wait: false });
  const r = report("pg-boss", version, seconds, setupSeconds);
  r.batch = batchSize;
  return r;
}

(async () => {
  const r = which === "graphile-worker" ? await graphile() : which === "pg-boss" ? await pgboss() : null;
  if (!r) {
    console.error(`unknown peer ${which}; expected graphile-worker or pg-boss`);
    process.exit(2);
  }
  console.log(JSON.stringify(r));
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
