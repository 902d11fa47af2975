// The PyTorch peer child process (see bench_torch_peer.h).
#include "cli/bench_torch_peer.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace moe {

std::unique_ptr<TorchPeer> TorchPeer::start(const TorchPeerConfig& c, std::string* why) {
  if (::access(c.python.c_str(), X_OK) != 0) {
    *why = "no python at " + c.python;
    return nullptr;
  }
  if (!std::filesystem::exists(c.script)) {
    *why = "no peer script at " + c.script;
    return nullptr;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a peer that died answers EPIPE, not a signal that ends moectl
  int in[2], out[2];
  if (::pipe(in) != 0 || ::pipe(out) != 0) {
    *why = std::string("pipe: ") + std::strerror(errno);
    return nullptr;
  }
  std::vector<std::string> args{c.python,
                                c.script,
                                "--hidden",
                                std::to_string(c.hidden),
                                "--intermediate",
                                std::to_string(c.intermediate),
                                "--experts",
                                std::to_string(c.experts),
                                "--top-k",
                                std::to_string(c.top_k),
                                "--dtype",
                                c.dtype == DType::BF16 ? "bf16" : "f32",
                                "--threads",
                                std::to_string(c.threads),
                                "--weights",
                                c.weights_file};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    *why = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::close(in[0]), ::close(in[1]), ::close(out[0]), ::close(out[1]);
    ::execv(argv[0], argv.data());
    std::string msg = std::string("error exec ") + argv[0] + ": " + std::strerror(errno) + "\n";
    (void)!::write(1, msg.data(), msg.size());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  std::unique_ptr<TorchPeer> owned(new TorchPeer());
  TorchPeer& peer = *owned;
  peer.config_ = c;
  peer.pid_ = pid;
  peer.to_child_ = in[1];
  peer.from_child_ = out[0];
  try {
    peer.banner_ = peer.command("");
  } catch (const std::exception& e) {
    *why = e.what();
    return nullptr;
  }
  if (peer.banner_.rfind("ready", 0) != 0) {
    *why = "peer did not start: " + (peer.banner_.empty() ? std::string("no answer (is torch installed?)") : peer.banner_);
    return nullptr;
  }
  return owned;
}

TorchPeer::~TorchPeer() {
  if (to_child_ >= 0) {
    const char quit[] = "quit\n";
    (void)!::write(to_child_, quit, sizeof quit - 1);
    ::close(to_child_);
  }
  if (from_child_ >= 0) ::close(from_child_);
  if (pid_ > 0) {
    int status = 0;
    ::waitpid(pid_, &status, 0);  // the child ends on "quit" or on the closed stdin
  }
}

std::string TorchPeer::command(const std::string& line) {
  if (!line.empty()) {
    const std::string text = line + "\n";
    if (::write(to_child_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw std::runtime_error("torch peer: cannot send '" + line + "': " + std::strerror(errno));
  }
  for (;;) {
    const size_t nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string answer = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return answer;
    }
    char buf[4096];
    const ssize_t got = ::read(from_child_, buf, sizeof buf);
    if (got <= 0) {
      if (got < 0 && errno == EINTR) continue;
      if (line.empty()) return pending_;  // the child ended before its ready line
      throw std::runtime_error("torch peer ended while answering '" + line + "'");
    }
    pending_.append(buf, static_cast<size_t>(got));
  }
}

void TorchPeer::set_inputs(const std::string& path, int64_t tokens, const std::vector<PeerInput>& sets) {
  {
    std::ofstream f(path, std::ios::binary);
    for (const PeerInput& s : sets) {
      f.write(reinterpret_cast<const char*>(s.x), static_cast<std::streamsize>(tokens * config_.hidden * 4));
      f.write(reinterpret_cast<const char*>(s.ids.data()), static_cast<std::streamsize>(s.ids.size() * 4));
      f.write(reinterpret_cast<const char*>(s.weights.data()), static_cast<std::streamsize>(s.weights.size() * 4));
    }
    if (!f) throw std::runtime_error("cannot write peer inputs to " + path);
  }
  const std::string answer = command("input " + path + " " + std::to_string(tokens) + " " + std::to_string(sets.size()));
  if (answer != "ok") throw std::runtime_error("torch peer refused its inputs: " + answer);
}

double TorchPeer::run_ms(int reps) {
  const std::string answer = command("run " + std::to_string(reps));
  if (answer.rfind("ms ", 0) != 0) throw std::runtime_error("torch peer run failed: " + answer);
  return std::stod(answer.substr(3));
}

void TorchPeer::set_threads(int threads) {
  const std::string answer = command("threads " + std::to_string(threads));
  if (answer != "ok") throw std::runtime_error("torch peer threads " + std::to_string(threads) + " failed: " + answer);
}

std::vector<float> TorchPeer::output(const std::string& path, int64_t tokens) {
  const std::string answer = command("output " + path);
  if (answer != "ok") throw std::runtime_error("torch peer output failed: " + answer);
  std::vector<float> y(static_cast<size_t>(tokens * config_.hidden));
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(y.data()), static_cast<std::streamsize>(y.size() * 4));
  if (!f) throw std::runtime_error("torch peer output " + path + " is short");
  return y;
}

}  // namespace moe
