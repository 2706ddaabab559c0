/** `node build/bench/node.js input.json`: runBench in Node; prints its figures as JSON. */
import { readFileSync } from "node:fs";
import { type BenchInput, runBench } from "./bench.js";

const api = (await import(new URL("../../dist/index.js", import.meta.url).href)) as typeof import("../src/index.js");
const input = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as BenchInput;
process.stdout.write(`${JSON.stringify(await runBench(api, input))}\n`);
