// Everything moe-worker can be told on its command line (worker_flags.h binds these to flags and
// MOE_* environment variables); tests fill it directly.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/net/transport_options.h"

namespace moe {

struct WorkerOptions {
  std::string coordinator;              // HOST:PORT of moe-coordinator (required)
  std::string listen = "127.0.0.1:0";   // where forward/prepare/commit requests arrive; port 0: any free port
  std::string backend = "cpu";          // cpu | cuda
  std::string cuda_path = "auto";       // CUDA backend's expert kernels: auto | streaming | tiles32/64/128 | cublas
  int threads = 0;                      // CPU backend threads (<= 0: OpenBLAS's default)
  int batch_threads = 0;                // batches computed at once (<= 0: 2 on cpu, 1 on cuda)
  uint16_t metrics_port = 0;            // Prometheus /metrics port on the listen host; 0: off
  std::string name;                     // shown by the coordinator; empty: the host name
  uint64_t memory_bytes = 0;            // weight memory offered; 0: derived from the machine
  uint32_t slots = 0;                   // expert copies offered; 0: memory_bytes / largest expert
  std::string cluster_token;            // every request to and from this worker carries it (empty: none)
  std::string cluster_token_file;       // read into cluster_token at start (keeps it out of ps)
  bool metrics_open = false;            // /metrics without the token even when one is set
  uint32_t max_queue = 1024;            // forward requests queued, computing or with an unwritten reply
  uint32_t batch_wait_us = 0;           // how long the first request of a batch waits for company (0: batch
                                        // only what queued up while the compute threads were busy)
  uint32_t max_batch_tokens = 8192;     // tokens one backend call takes at most (a bigger request runs alone)
  bool no_shared_storage = false;        // keep loaded experts' weights to stream to peers, and stream gained
                                        // experts from the peers a prepare names (else: the model source)
  uint32_t fetch_timeout_ms = 30000;    // deadline of one streamed chunk (--no-shared-storage)
  uint64_t max_frame_bytes = 64u << 20; // largest frame a client may send (bigger ones close the connection)
  // Coordinator link timings.
  uint32_t connect_timeout_ms = 1000;
  uint32_t retry_min_ms = 100;          // first reconnect delay, doubling up to retry_max_ms
  uint32_t retry_max_ms = 2000;
  uint32_t request_timeout_ms = 3000;   // getModel / registerWorker / heartbeat replies
  TransportOptions transport;           // TLS (every connection: clients, coordinator, peers) and server bounds
};

}  // namespace moe
