// The /metrics HTTP server: accept, (TLS: handshake,) read the request head (bounded), answer, close.
#include "runtime/metrics/metrics_http_server.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <prometheus/text_serializer.h>

#include <stdexcept>
#include <thread>
#include <type_traits>

#include "runtime/metrics/bearer_auth.h"

namespace moe {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kMaxRequestHead = 16 * 1024;

// One request on one connection; Stream is tcp::socket (plain HTTP) or ssl::stream<tcp::socket> (HTTPS).
template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, tcp::socket>;

 public:
  Session(Stream stream, std::shared_ptr<prometheus::Registry> registry, std::shared_ptr<const std::string> token)
      : stream_(std::move(stream)), registry_(std::move(registry)), token_(std::move(token)),
        timer_(socket().get_executor()) {}

  void start() {
    // A client that never finishes its handshake or request is dropped.
    timer_.expires_after(std::chrono::seconds(10));
    timer_.async_wait([self = this->shared_from_this()](const boost::system::error_code& ec) {
      boost::system::error_code ignored;
      if (!ec) self->socket().close(ignored);
    });
    if constexpr (kTls) {
      stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](const boost::system::error_code& ec) {
        if (ec) return self->finish();  // no certificate from the CA, or plain HTTP on the TLS port
        self->read();
      });
    } else {
      read();
    }
  }

 private:
  tcp::socket& socket() {
    if constexpr (kTls) return stream_.next_layer();
    else return stream_;
  }

  void read() {
    asio::async_read_until(stream_, asio::dynamic_buffer(request_, kMaxRequestHead), "\r\n\r\n",
                           [self = this->shared_from_this()](const boost::system::error_code& ec, size_t) {
                             if (ec == asio::error::not_found)
                               return self->respond("431 Request Header Fields Too Large", "text/plain",
                                                    "request head too large\n");
                             if (ec) return self->finish();
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
    if (!bearer_authorized(request_, *token_)) {
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
    asio::async_write(stream_, asio::buffer(response_),
                      [self = this->shared_from_this()](const boost::system::error_code& ec, size_t) {
                        if constexpr (kTls) {
                          if (!ec) {  // close_notify, so the client sees a clean end (bounded by the timer)
                            return self->stream_.async_shutdown(
                                [self](const boost::system::error_code&) { self->finish(); });
                          }
                        }
                        self->finish();
                      });
  }

  void finish() {
    boost::system::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
    timer_.cancel();
  }

  Stream stream_;
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
  std::shared_ptr<ssl::context> tls;
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        if (tls) {
          using TlsStream = ssl::stream<tcp::socket>;
          std::make_shared<Session<TlsStream>>(TlsStream(std::move(socket), *tls), registry, token)->start();
        } else {
          std::make_shared<Session<tcp::socket>>(std::move(socket), registry, token)->start();
        }
      }
      accept();
    });
  }
};

MetricsHttpServer::MetricsHttpServer(const std::string& host, uint16_t port,
                                     std::shared_ptr<prometheus::Registry> registry, std::string bearer_token,
                                     std::shared_ptr<boost::asio::ssl::context> tls)
    : impl_(std::make_unique<Impl>()) {
  impl_->registry = std::move(registry);
  impl_->token = std::make_shared<const std::string>(std::move(bearer_token));
  impl_->tls = std::move(tls);
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

bool MetricsHttpServer::tls() const { return impl_->tls != nullptr; }

}  // namespace moe
