#include "marginkit/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
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

// A job is published as a generation number in ctl_ (with a "closed" bit and
// the count of workers inside it). A worker joins the open job of the
// generation it saw and claims chunks until none is left; the caller works
// too, then closes the job and waits only for the workers that joined. A
// worker that was asleep or descheduled while the job ran does not hold it
// up (in a busy VM a wake-up can take longer than the whole job), and the
// caller waits for the others by spinning, not on a futex.
class Pool {
 public:
  explicit Pool(int threads) : size_(threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int size() const noexcept { return size_; }

  // Runs the chunks of one job; the caller works too. Returns when all are done.
  // One job at a time (parallel_for holds the job mutex).
  void run(std::size_t n, std::size_t chunk,
           const std::function<void(std::size_t, std::size_t)>& fn) {
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    next_.store(0, std::memory_order_relaxed);
    ++generation_;
    ctl_.store(generation_ << kGenShift, std::memory_order_seq_cst);  // open, nobody inside
    {
      // Sleeping workers check ctl_ under m_: lock before notifying.
      std::lock_guard<std::mutex> lock(m_);
    }
    cv_.notify_all();
    drain();
    // Close the job (nobody joins any more) and wait for those inside.
    std::uint64_t c = ctl_.fetch_or(kClosed, std::memory_order_acq_rel);
    for (unsigned spins = 0; (c & kCountMask) != 0; ++spins) {
      if (spins < (1u << 16)) {
        relax();
      } else {
        std::this_thread::yield();
      }
      c = ctl_.load(std::memory_order_acquire);
    }
    fn_ = nullptr;
  }

 private:
  static constexpr std::uint64_t kClosed = 1u << 16, kCountMask = kClosed - 1;
  static constexpr int kGenShift = 17;

  void drain() {
    for (;;) {
      std::size_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
      if (begin >= n_) return;
      (*fn_)(begin, std::min(n_, begin + chunk_));
    }
  }

  std::uint64_t published() const noexcept {
    return ctl_.load(std::memory_order_seq_cst) >> kGenShift;
  }

  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      // Batch calls come in bursts (a market update rebuilds risk arrays, then
      // re-margins every account): spin a little before sleeping, so the next
      // job does not wait for a wake-up (tens of microseconds in a VM).
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (published() == seen && !stop_.load(std::memory_order_relaxed) &&
             std::chrono::steady_clock::now() < until) {
        for (int k = 0; k < 64; ++k) relax();
        // Let whatever else wants this core run (the caller itself, when the
        // machine is busy): an idle spinner must not slow anyone down.
        std::this_thread::yield();
      }
      if (published() == seen) {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stop_.load() || published() != seen; });
      }
      if (stop_.load()) return;
      // Join the job if it is still open.
      std::uint64_t c = ctl_.load(std::memory_order_acquire);
      seen = c >> kGenShift;
      while ((c & kClosed) == 0) {
        if (ctl_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
          drain();
          ctl_.fetch_sub(1, std::memory_order_release);
          break;
        }
        if ((c >> kGenShift) != seen) break;  // cannot happen while it is open
      }
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  // The job; written by the caller before it opens the job in ctl_.
  const std::function<void(std::size_t, std::size_t)>* fn_ = nullptr;
  std::size_t n_ = 0, chunk_ = 1;
  std::uint64_t generation_ = 0;  // the caller's copy
  std::atomic<std::size_t> next_{0};
  // generation << kGenShift | closed bit | workers inside the job.
  std::atomic<std::uint64_t> ctl_{kClosed};
  std::atomic<bool> stop_{false};
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
                  const std::function<void(std::size_t, std::size_t)>& fn,
                  std::size_t per_thread) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  std::unique_lock<std::mutex> lock(job_mutex(), std::try_to_lock);
  if (!lock.owns_lock() || pool()->size() == 1 || n < 2 * grain) {
    fn(0, n);
    return;
  }
  const auto threads = static_cast<std::size_t>(pool()->size());
  // A few chunks per thread balance uneven work; never below the grain.
  const std::size_t chunks = std::max<std::size_t>(per_thread, 1) * threads;
  std::size_t chunk = std::max(grain, (n + chunks - 1) / chunks);
  pool()->run(n, chunk, fn);
}

}  // namespace marginkit
