// Polyglot tool loop: a Node.js gRPC client built from the .proto files alone sends a request with one tool,
// joins the tool-call deltas it streams, runs the call, sends the result back in a ROLE_TOOL turn after the
// assistant turn that made it, and prints the outcome as one line of JSON:
//   {"first_finish": "...", "streamed": [{"id", "name", "arguments"}], "result_calls": [...], "answer": "...",
//    "final_finish": "..."}
// Usage: node tests/node/tool_loop_client.mjs TARGET MODEL_ID
// Exits 1 on any error (the status goes to stderr), 2 on bad usage.

import grpc from "@grpc/grpc-js";

import { loadService } from "./service.mjs";

const DEADLINE_MS = 60_000;
const WEATHER = {
  name: "get_weather",
  description: "The current weather in a city",
  // JSON text, so that integers stay integers on their way to the provider.
  parameters_json: JSON.stringify({
    type: "object",
    properties: { city: { type: "string", maxLength: 64 } },
    required: ["city"],
  }),
};

// One Generate: the text, the calls joined from their deltas by index, and the result frame.
function generate(client, request) {
  return new Promise((resolve, reject) => {
    const text = [];
    const calls = [];
    let result = null;
    const call = client.Generate(request, new grpc.Metadata(), { deadline: new Date(Date.now() + DEADLINE_MS) });
    call.on("data", (frame) => {
      if (frame.frame === "delta") {
        text.push(frame.delta.text);
      } else if (frame.frame === "tool_call") {
        const delta = frame.tool_call;
        if (!calls[delta.index]) calls[delta.index] = { id: delta.id, name: delta.name, arguments: "" };
        calls[delta.index].arguments += delta.arguments;
      } else if (frame.frame === "result") {
        result = frame.result;
      }
    });
    call.on("error", reject);
    call.on("end", () =>
      result === null ? reject(new Error("no result frame")) : resolve({ text: text.join(""), calls, result }),
    );
  });
}

function runTool(call) {
  const { city } = JSON.parse(call.arguments || "{}");
  return `Sunny, 24 C in ${city}`;
}

async function main() {
  const [target, modelId] = process.argv.slice(2);
  if (!target || !modelId) {
    process.stderr.write("usage: node tool_loop_client.mjs TARGET MODEL_ID\n");
    process.exit(2);
  }
  const InferenceService = loadService();
  const client = new InferenceService(target, grpc.credentials.createInsecure());
  try {
    const messages = [{ role: "ROLE_USER", content: "What is the weather in Paris?" }];
    const request = { model_id: modelId, messages, tools: [WEATHER], tool_choice: { mode: "TOOL_CHOICE_MODE_AUTO" } };
    const first = await generate(client, request);
    messages.push({ role: "ROLE_ASSISTANT", content: first.text, tool_calls: first.result.tool_calls });
    for (const call of first.result.tool_calls) {
      messages.push({ role: "ROLE_TOOL", tool_call_id: call.id, content: runTool(call) });
    }
    const second = await generate(client, { ...request, messages });
    const output = {
      first_finish: first.result.finish_reason,
      streamed: first.calls,
      result_calls: first.result.tool_calls,
      answer: second.text,
      final_finish: second.result.finish_reason,
    };
    process.stdout.write(`${JSON.stringify(output)}\n`);
  } finally {
    client.close();
  }
}

main().catch((error) => {
  const grpcStatus = error.code !== undefined ? grpc.status[error.code] ?? error.code : undefined;
  process.stderr.write(`tool_loop_client: ${grpcStatus !== undefined ? `${grpcStatus}: ${error.details}` : error.message}\n`);
  process.exitCode = 1;
});
