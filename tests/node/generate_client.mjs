// Polyglot client check: a Node.js gRPC client built from the .proto file alone (no generated code, no
// reflection) lists the models, then streams one greedy Generate, and prints the outcome as one line of JSON:
//   {"models": ["id", ...], "text": "...", "finish_reason": "FINISH_REASON_...", "completion_tokens": N}
// Usage: node tests/node/generate_client.mjs TARGET MODEL_ID [PROMPT] [MAX_TOKENS]
//   TARGET is any gRPC target: 127.0.0.1:50051, unix:///var/run/warpcore/warpcore.sock, dns:///host:50051.
//   $WARPCORE_TOKEN, when set, is sent as `authorization: Bearer ...`.
// Exits 1 on any error (the status goes to stderr), 2 on bad usage.

import grpc from "@grpc/grpc-js";

import { loadService } from "./service.mjs";

const DEADLINE_MS = 60_000;

function usage(message) {
  process.stderr.write(`generate_client: ${message}\n`);
  process.stderr.write("usage: node generate_client.mjs TARGET MODEL_ID [PROMPT] [MAX_TOKENS]\n");
  process.exit(2);
}

function deadline() {
  return new Date(Date.now() + DEADLINE_MS);
}

function listModels(client, metadata) {
  return new Promise((resolve, reject) => {
    client.ListModels({}, metadata, { deadline: deadline() }, (error, response) =>
      error ? reject(error) : resolve(response.models.map((model) => model.id)),
    );
  });
}

function generate(client, metadata, request) {
  return new Promise((resolve, reject) => {
    const text = [];
    let result = null;
    let failed = false;
    const fail = (error) => {
      if (!failed) {
        failed = true;
        call.cancel();
        reject(error);
      }
    };
    const call = client.Generate(request, metadata, { deadline: deadline() });
    call.on("data", (frame) => {
      if (result !== null) {
        fail(new Error("a frame arrived after the result frame"));
      } else if (frame.frame === "delta") {
        text.push(frame.delta.text);
      } else if (frame.frame === "result") {
        result = frame.result;
      } else {
        fail(new Error(`unexpected frame ${JSON.stringify(frame)}`));
      }
    });
    call.on("error", fail);
    call.on("end", () => {
      if (failed) return;
      if (result === null) {
        reject(new Error("the stream ended without a result frame"));
      } else {
        resolve({ text: text.join(""), result });
      }
    });
  });
}

async function main() {
  const [target, modelId, prompt = "The capital of France is", maxTokens = "16"] = process.argv.slice(2);
  if (!target || !modelId) usage("TARGET and MODEL_ID are required");
  if (!/^[1-9][0-9]*$/.test(maxTokens)) usage(`MAX_TOKENS must be a positive integer, not ${maxTokens}`);

  const InferenceService = loadService();
  const client = new InferenceService(target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (process.env.WARPCORE_TOKEN) metadata.set("authorization", `Bearer ${process.env.WARPCORE_TOKEN}`);
  try {
    const models = await listModels(client, metadata);
    const { text, result } = await generate(client, metadata, {
      model_id: modelId,
      prompt,
      options: { max_tokens: Number(maxTokens), temperature: 0 },
    });
    const output = {
      models,
      text,
      finish_reason: result.finish_reason,
      completion_tokens: result.usage ? result.usage.completion_tokens : 0,
    };
    process.stdout.write(`${JSON.stringify(output)}\n`);
  } finally {
    client.close();
  }
}

main().catch((error) => {
  const grpcStatus = error.code !== undefined ? grpc.status[error.code] ?? error.code : undefined;
  const message = grpcStatus !== undefined ? `${grpcStatus}: ${error.details}` : error.message;
  process.stderr.write(`generate_client: ${message}\n`);
  process.exitCode = 1;
});
