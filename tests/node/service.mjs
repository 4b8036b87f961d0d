// The InferenceService client class, loaded from the .proto files alone, as every Node.js client here uses it:
// field names as in the .proto (finish_reason, completion_tokens), enums by name, oneofs named (frame: "delta" |
// "tool_call" | "reasoning" | "result").
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));

export function loadService() {
  const definition = protoLoader.loadSync("warpcore/v1/inference.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    enums: String,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).warpcore.v1.InferenceService;
}
