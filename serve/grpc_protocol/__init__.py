"""The Open Inference Protocol's gRPC messages (grpc_predict_v2.proto), built in a descriptor pool of their own.

KServe's SDK and tritonclient each register `inference.*` messages in protobuf's default pool; the zoo's own pool
keeps a process that imports either (a test, a client beside the server) free of duplicate-symbol errors.
"""
