// Who may say what (docs/architecture.md): the cluster token every request carries in
// Envelope.clusterToken, the control key a worker hands the coordinator it registers with, the
// constant-time comparison of both, and --cluster-token-file. Each daemon calls check_cluster_token once,
// in its request handler, before looking at the request.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <capnp/message.h>

#include "runtime/wire/moe.capnp.h"

namespace moe {

// Longest cluster token accepted anywhere (flag, file, wire): longer ones are refused unread.
constexpr size_t kMaxClusterTokenBytes = 1024;
// Bytes of a worker's control key.
constexpr size_t kControlKeyBytes = 16;

// True when `a` and `b` are equal; the time taken depends on their lengths only, not on where they differ.
bool same_secret(std::string_view a, std::string_view b);

// Sets Envelope.clusterToken of `message`'s root (an Envelope) when `token` is not empty.
void set_cluster_token(capnp::MessageBuilder& message, std::string_view token);
void set_cluster_token(wire::Envelope::Builder envelope, std::string_view token);

// Throws ServiceError(unauthorized) unless `expected` is empty or the envelope carries exactly it. The
// message names the request kind and whether the token was missing or wrong, never the token.
void check_cluster_token(wire::Envelope::Reader envelope, std::string_view expected);

// 16 random bytes from the OS (std::random_device).
std::string new_control_key();

// The token in `path` (surrounding whitespace and the final newline removed). Throws std::runtime_error
// naming the file when it cannot be read, is empty, or is longer than kMaxClusterTokenBytes.
std::string read_cluster_token_file(const std::string& path);

// Resolves --cluster-token / --cluster-token-file into `token`: both given is an error (thrown as
// std::invalid_argument); a file's content replaces the empty token. Checks the length either way.
void resolve_cluster_token(std::string& token, const std::string& token_file);

}  // namespace moe
