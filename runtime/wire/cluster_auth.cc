// Cluster token and control key checks (see cluster_auth.h).
#include "runtime/wire/cluster_auth.h"

#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "runtime/wire/envelope_util.h"
#include "runtime/wire/service_error.h"

namespace moe {

bool same_secret(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

void set_cluster_token(wire::Envelope::Builder envelope, std::string_view token) {
  if (!token.empty()) envelope.setClusterToken(capnp::Text::Reader(token.data(), token.size()));
}

void set_cluster_token(capnp::MessageBuilder& message, std::string_view token) {
  set_cluster_token(message.getRoot<wire::Envelope>(), token);
}

void check_cluster_token(wire::Envelope::Reader envelope, std::string_view expected) {
  if (expected.empty()) return;
  const std::string what = message_kind_name(envelope);
  if (!envelope.hasClusterToken() || envelope.getClusterToken().size() == 0) {
    throw ServiceError(wire::ErrorCode::UNAUTHORIZED, what + " without a cluster token: this cluster requires one");
  }
  auto got = envelope.getClusterToken();
  if (got.size() > kMaxClusterTokenBytes ||
      !same_secret(std::string_view(got.cStr(), got.size()), expected)) {
    throw ServiceError(wire::ErrorCode::UNAUTHORIZED,
                       what + " with a wrong cluster token (" + std::to_string(got.size()) + " bytes)");
  }
}

std::string new_control_key() {
  std::random_device device;
  std::string key(kControlKeyBytes, '\0');
  for (size_t i = 0; i < key.size(); i += 4) {
    const uint32_t r = device();
    for (size_t b = 0; b < 4 && i + b < key.size(); ++b) key[i + b] = static_cast<char>((r >> (8 * b)) & 0xff);
  }
  return key;
}

std::string read_cluster_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read cluster token file " + path);
  std::string text(kMaxClusterTokenBytes + 2, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  std::string token = first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
  if (token.empty()) throw std::runtime_error("cluster token file " + path + " is empty");
  if (token.size() > kMaxClusterTokenBytes || (!in.eof() && in.peek() != std::char_traits<char>::eof())) {
    throw std::runtime_error("cluster token file " + path + " holds more than " +
                             std::to_string(kMaxClusterTokenBytes) + " bytes");
  }
  return token;
}

void resolve_cluster_token(std::string& token, const std::string& token_file) {
  if (!token_file.empty()) {
    if (!token.empty()) throw std::invalid_argument("give --cluster-token or --cluster-token-file, not both");
    token = read_cluster_token_file(token_file);
  }
  if (token.size() > kMaxClusterTokenBytes) {
    throw std::invalid_argument("--cluster-token is " + std::to_string(token.size()) + " bytes, at most " +
                                std::to_string(kMaxClusterTokenBytes) + " are accepted");
  }
}

}  // namespace moe
