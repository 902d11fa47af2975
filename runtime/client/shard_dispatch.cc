// send_shards: encode, send all, wait for all (see shard_dispatch.h).
#include "runtime/client/shard_dispatch.h"

#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>

#include <capnp/message.h>

#include "runtime/client/forward_messages.h"
#include "runtime/client/shard_split.h"
#include "runtime/wire/blob_message.h"

namespace moe {

namespace {

// Token bytes of a shard from which packing it gets its own thread.
constexpr size_t kParallelShardBytes = size_t{1} << 20;

struct RoundState {
  std::mutex mutex;
  std::condition_variable done;
  size_t remaining = 0;
  std::vector<ShardOutcome> outcomes;
};

}  // namespace

std::vector<ShardOutcome> send_shards(PeerLinks& links, const ShardRound& round,
                                      std::map<int32_t, WorkerShard> plan) {
  auto state = std::make_shared<RoundState>();
  state->outcomes.reserve(plan.size());
  for (auto& [worker, shard] : plan) {
    ShardOutcome o;
    o.worker = static_cast<uint32_t>(worker);
    o.shard = std::move(shard);
    state->outcomes.push_back(std::move(o));
  }
  state->remaining = state->outcomes.size();

  auto finish = [state](size_t i, std::exception_ptr error, Frame reply) {
    std::lock_guard lock(state->mutex);
    state->outcomes[i].error = error;
    state->outcomes[i].reply = std::move(reply);
    if (--state->remaining == 0) state->done.notify_all();
  };

  // Connect first (connecting blocks), then encode and send each shard.
  auto send_one = [&](size_t i) {
    ShardOutcome& o = state->outcomes[i];
    std::shared_ptr<Connection> connection;
    try {
      o.address = round.placement->worker(o.worker).address;
      connection = links.get(o.address);
      // The tokens go into the builder's own blob storage (not zeroed first), the rest into one first
      // segment big enough for it; the connection writes the segments as they are (no flat copy).
      const size_t bound = forward_request_bound(0, o.shard.assignments.size(), round.x->cols, round.dtype,
                                                 round.cluster_token.size());
      auto message = std::make_unique<BlobMessageBuilder>(static_cast<unsigned>(bound / sizeof(capnp::word)));
      build_forward_request(*message, round.placement->epoch(), round.layer, round.dtype, *round.x, o.shard,
                            round.request_timeout, round.cluster_token, round.deterministic, round.weight_version);
      connection->request_async(std::move(message), round.request_timeout,
                                [finish, i](std::exception_ptr error, Frame reply) {
                                  finish(i, error, std::move(reply));
                                });
    } catch (...) {
      finish(i, std::current_exception(), Frame{});
    }
  };
  // Big shards are packed in parallel (one helper thread each, the last on this thread); small ones
  // here, one after the other, where a thread would cost more than the packing.
  std::vector<std::future<void>> helpers;
  const size_t n = state->outcomes.size();
  for (size_t i = 0; i < n; ++i) {
    const size_t bytes = shard_payload_bytes(state->outcomes[i].shard, round.x->cols, round.dtype) / 2;
    if (i + 1 < n && bytes >= kParallelShardBytes) {
      helpers.push_back(std::async(std::launch::async, send_one, i));
    } else {
      send_one(i);
    }
  }
  for (auto& helper : helpers) helper.get();  // send_one does not throw

  std::unique_lock lock(state->mutex);
  state->done.wait(lock, [&] { return state->remaining == 0; });
  return std::move(state->outcomes);
}

}  // namespace moe
