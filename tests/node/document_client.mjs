// A Node.js gRPC client built from the .proto files alone asks about a PDF document, with a long-lived cache
// breakpoint on the system prompt and a short one on the document, and prints the outcome as one line of JSON:
//   {"text": "...", "finish": "...", "documents": true}
// ("documents": the model's capabilities.documents, from ListModels).
// Usage: node tests/node/document_client.mjs TARGET MODEL_ID PDF_BASE64
// Exits 1 on any error (the status goes to stderr), 2 on bad usage.

import grpc from "@grpc/grpc-js";

import { loadService } from "./service.mjs";

const DEADLINE_MS = 60_000;

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    client[method](request, new grpc.Metadata(), { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

function generate(client, request) {
  return new Promise((resolve, reject) => {
    const text = [];
    let result = null;
    const stream = client.Generate(request, new grpc.Metadata(), { deadline: new Date(Date.now() + DEADLINE_MS) });
    stream.on("data", (frame) => {
      if (frame.frame === "delta") text.push(frame.delta.text);
      else if (frame.frame === "result") result = frame.result;
    });
    stream.on("error", reject);
    stream.on("end", () => (result === null ? reject(new Error("no result frame")) : resolve({ text, result })));
  });
}

async function main() {
  const [target, modelId, pdfBase64] = process.argv.slice(2);
  if (!target || !modelId || !pdfBase64) {
    console.error("usage: node tests/node/document_client.mjs TARGET MODEL_ID PDF_BASE64");
    process.exit(2);
  }
  const InferenceService = loadService();
  const client = new InferenceService(target, grpc.credentials.createInsecure());
  try {
    const listed = await call(client, "ListModels", {});
    const model = listed.models.find((candidate) => candidate.id === modelId);
    const { text, result } = await generate(client, {
      model_id: modelId,
      messages: [
        {
          role: "ROLE_USER",
          content: "Summarize this report.",
          parts: [
            {
              document: { data: Buffer.from(pdfBase64, "base64"), name: "report.pdf" },
              cache_breakpoint: "CACHE_BREAKPOINT_SHORT",
            },
          ],
        },
      ],
      options: { max_tokens: 16, system: "Be brief.", system_cache_breakpoint: "CACHE_BREAKPOINT_LONG" },
    });
    console.log(
      JSON.stringify({ text: text.join(""), finish: result.finish_reason, documents: model.capabilities.documents }),
    );
  } finally {
    client.close();
  }
}

main().catch((error) => {
  console.error(error.code !== undefined ? `${grpc.status[error.code]}: ${error.details}` : String(error));
  process.exit(1);
});
