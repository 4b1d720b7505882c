#include "marginkit/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace marginkit {
namespace {

// How long an idle worker polls for the next job before it sleeps.
constexpr std::chrono::microseconds kSpin{1000};

inline void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

int hardware_threads() noexcept {
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(h);
}

int default_threads() noexcept {
  if (const char* env = std::getenv("MARGINKIT_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return hardware_threads();
}

class Pool {
 public:
  explicit Pool(int threads) : size_(threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int size() const noexcept { return size_; }

  // Runs the chunks of one job; the caller works too. Returns when all are done.
  void run(std::size_t n, std::size_t chunk,
           const std::function<void(std::size_t, std::size_t)>& fn) {
    {
      std::lock_guard<std::mutex> lock(m_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      pending_ = workers_.size();
      ++generation_;
      published_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(m_);
    done_cv_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void drain() {
    for (;;) {
      std::size_t begin = next_.fetch_add(chunk_);
      if (begin >= n_) return;
      (*fn_)(begin, std::min(n_, begin + chunk_));
    }
  }

  void work() {
    std::size_t seen = 0;
    for (;;) {
      // Batch calls come in bursts (a market update rebuilds risk arrays, then
      // re-margins every account): spin a little before sleeping, so the next
      // job does not wait for a wake-up (tens of microseconds in a VM).
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (published_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < until) {
        for (int k = 0; k < 64; ++k) relax();
      }
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      drain();
      {
        std::lock_guard<std::mutex> lock(m_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(std::size_t, std::size_t)>* fn_ = nullptr;
  std::size_t n_ = 0, chunk_ = 1, pending_ = 0, generation_ = 0;
  std::atomic<std::size_t> next_{0};
  std::atomic<std::size_t> published_{0};  // generation_, readable without the lock
  bool stop_ = false;
};

// One job at a time; a busy pool means the caller runs serially.
std::mutex& job_mutex() {
  static std::mutex m;
  return m;
}

std::unique_ptr<Pool>& pool() {
  static std::unique_ptr<Pool> p = std::make_unique<Pool>(default_threads());
  return p;
}

}  // namespace

int num_threads() noexcept {
  std::lock_guard<std::mutex> lock(job_mutex());
  return pool()->size();
}

void set_num_threads(int n) {
  if (n <= 0) n = hardware_threads();
  std::lock_guard<std::mutex> lock(job_mutex());
  if (pool()->size() != n) {
    pool().reset();
    pool() = std::make_unique<Pool>(n);
  }
}

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  std::unique_lock<std::mutex> lock(job_mutex(), std::try_to_lock);
  if (!lock.owns_lock() || pool()->size() == 1 || n < 2 * grain) {
    fn(0, n);
    return;
  }
  const auto threads = static_cast<std::size_t>(pool()->size());
  // A few chunks per thread balance uneven work; never below the grain.
  std::size_t chunk = std::max(grain, (n + 4 * threads - 1) / (4 * threads));
  pool()->run(n, chunk, fn);
}

}  // namespace marginkit
