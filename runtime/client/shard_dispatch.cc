// send_shards: encode, send all, wait for all (see shard_dispatch.h).
#include "runtime/client/shard_dispatch.h"

#include <condition_variable>
#include <memory>
#include <mutex>

#include <capnp/message.h>

#include "runtime/client/forward_messages.h"

namespace moe {

namespace {

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
  for (size_t i = 0; i < state->outcomes.size(); ++i) {
    ShardOutcome& o = state->outcomes[i];
    std::shared_ptr<Connection> connection;
    try {
      o.address = round.placement->worker(o.worker).address;
      connection = links.get(o.address);
      capnp::MallocMessageBuilder message;
      build_forward_request(message, round.placement->epoch(), round.layer, round.dtype, *round.x, o.shard,
                            round.request_timeout, round.cluster_token, round.deterministic, round.weight_version);
      connection->request_async(message, round.request_timeout,
                                [finish, i](std::exception_ptr error, Frame reply) {
                                  finish(i, error, std::move(reply));
                                });
    } catch (...) {
      finish(i, std::current_exception(), Frame{});
    }
  }

  std::unique_lock lock(state->mutex);
  state->done.wait(lock, [&] { return state->remaining == 0; });
  return std::move(state->outcomes);
}

}  // namespace moe
