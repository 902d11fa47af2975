// RawConnection: POSIX sockets, poll() for bounded reads, MSG_NOSIGNAL writes (see raw_connection.h).
#include "tests/integration/raw_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "runtime/net/address.h"

namespace moe::integration {

RawConnection::RawConnection(const std::string& address) {
  HostPort hp = parse_host_port(address);
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket(): " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(hp.port);
  if (inet_pton(AF_INET, hp.host.c_str(), &addr.sin_addr) != 1)
    throw std::runtime_error("RawConnection: " + address + " is not an IPv4 address");
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error("cannot connect to " + address + ": " + error);
  }
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::write(std::span<const std::byte> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

bool RawConnection::write_words(std::span<const uint32_t> words) { return write(std::as_bytes(words)); }

bool RawConnection::write_message(capnp::MessageBuilder& message) {
  auto frame = encode_frame(message);
  return write(frame_bytes(frame));
}

void RawConnection::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

RawConnection::Reply RawConnection::read_reply(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<std::byte> buffer(1 << 16);
  while (true) {
    if (decoder_.has_output()) {
      Reply reply;
      try {
        reply.frame = decoder_.pop();
        reply.kind = Reply::Kind::Frame;
      } catch (const std::exception& e) {
        reply.kind = Reply::Kind::Closed;
        reply.detail = std::string("the peer sent bytes that are not a valid frame: ") + e.what();
      }
      return reply;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return {Reply::Kind::Timeout, {}, "no reply within " + std::to_string(timeout.count()) + " ms"};
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return {Reply::Kind::Closed, {}, "the peer closed the connection"};
    if (n < 0) return {Reply::Kind::Closed, {}, std::string("the connection broke: ") + std::strerror(errno)};
    decoder_.feed(std::span<const std::byte>(buffer.data(), static_cast<size_t>(n)));
  }
}

bool RawConnection::wait_closed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    Reply reply = read_reply(left);
    if (reply.kind == Reply::Kind::Closed) return true;
    if (reply.kind == Reply::Kind::Timeout) return false;
  }
}

}  // namespace moe::integration
