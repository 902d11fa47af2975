// The /metrics HTTP server: accept, read the request head (bounded), answer, close.
#include "runtime/metrics/metrics_http_server.h"

#include <boost/asio.hpp>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <stdexcept>
#include <thread>

namespace moe {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kMaxRequestHead = 16 * 1024;

bool equal_constant_time(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(b.size(), 1)]);
  return diff == 0 && !b.empty();
}

// The value of header `name` (case-insensitive) in a request head, without surrounding blanks.
std::optional<std::string> header_value(const std::string& head, const std::string& name) {
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos + 2 < head.size()) {
    const size_t start = pos + 2;
    const size_t end = head.find("\r\n", start);
    const std::string line = head.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const size_t colon = line.find(':');
    if (colon == name.size() && std::equal(name.begin(), name.end(), line.begin(), [](char x, char y) {
          return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
        })) {
      std::string value = line.substr(colon + 1);
      const size_t first = value.find_first_not_of(" \t");
      const size_t last = value.find_last_not_of(" \t");
      return first == std::string::npos ? std::string() : value.substr(first, last - first + 1);
    }
    pos = end;
  }
  return std::nullopt;
}

// Whether the head's Authorization header is `Bearer <token>`.
bool authorized(const std::string& head, const std::string& token) {
  if (token.empty()) return true;
  const auto value = header_value(head, "Authorization");
  if (!value || value->size() < 7 || !std::equal(value->begin(), value->begin() + 7, "bearer ", [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) == y;
      }))
    return false;
  std::string given = value->substr(7);
  given.erase(0, std::min(given.find_first_not_of(' '), given.size()));
  return equal_constant_time(given, token);
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<prometheus::Registry> registry, std::shared_ptr<const std::string> token)
      : socket_(std::move(socket)), registry_(std::move(registry)), token_(std::move(token)), timer_(socket_.get_executor()) {}

  void start() {
    timer_.expires_after(std::chrono::seconds(10));  // a client that never finishes its request is dropped
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->socket_.close();
    });
    read();
  }

 private:
  void read() {
    asio::async_read_until(socket_, asio::dynamic_buffer(request_, kMaxRequestHead), "\r\n\r\n",
                           [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                             if (ec) {
                               if (ec == asio::error::not_found) self->respond("431 Request Header Fields Too Large", "text/plain", "request head too large\n");
                               else self->timer_.cancel();
                               return;
                             }
                             self->answer();
                           });
  }

  void answer() {
    const size_t line_end = request_.find("\r\n");
    const std::string line = request_.substr(0, line_end);
    const bool get = line.rfind("GET ", 0) == 0;
    const bool head = line.rfind("HEAD ", 0) == 0;
    if (!get && !head) return respond("405 Method Not Allowed", "text/plain", "only GET /metrics\n");
    const size_t path_start = line.find(' ') + 1;
    std::string path = line.substr(path_start, line.find(' ', path_start) - path_start);
    path = path.substr(0, path.find('?'));
    if (path != "/metrics") return respond("404 Not Found", "text/plain", "not found: try /metrics\n");
    if (!authorized(request_, *token_)) {
      return respond("401 Unauthorized", "text/plain",
                     "/metrics needs the cluster token: send 'Authorization: Bearer <token>' (Prometheus: "
                     "authorization: credentials_file)\n",
                     false, "WWW-Authenticate: Bearer realm=\"moe-cluster metrics\"\r\n");
    }
    respond("200 OK", "text/plain; version=0.0.4; charset=utf-8",
            prometheus::TextSerializer().Serialize(registry_->Collect()), head);
  }

  // Sends the status line, headers and (unless head_only) the body, then closes.
  void respond(const std::string& status, const std::string& type, const std::string& body, bool head_only = false,
               const std::string& extra_headers = "") {
    response_ = "HTTP/1.1 " + status + "\r\nContent-Type: " + type + "\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n" + extra_headers + "Connection: close\r\n\r\n" +
                (head_only ? std::string() : body);
    asio::async_write(socket_, asio::buffer(response_),
                      [self = shared_from_this()](const boost::system::error_code&, size_t) {
                        boost::system::error_code ignored;
                        self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
                        self->socket_.close(ignored);
                        self->timer_.cancel();
                      });
  }

  tcp::socket socket_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<const std::string> token_;
  asio::steady_timer timer_;
  std::string request_;
  std::string response_;
};

}  // namespace

struct MetricsHttpServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<const std::string> token;
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(socket), registry, token)->start();
      accept();
    });
  }
};

MetricsHttpServer::MetricsHttpServer(const std::string& host, uint16_t port,
                                     std::shared_ptr<prometheus::Registry> registry, std::string bearer_token)
    : impl_(std::make_unique<Impl>()) {
  impl_->registry = std::move(registry);
  impl_->token = std::make_shared<const std::string>(std::move(bearer_token));
  const std::string address = host + ":" + std::to_string(port);
  try {
    tcp::endpoint endpoint(asio::ip::make_address(host), port);
    impl_->acceptor.open(endpoint.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(endpoint);
    impl_->acceptor.listen();
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve /metrics on " + address + ": " + e.what());
  }
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  asio::post(impl_->io, [this] {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t MetricsHttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

}  // namespace moe
