// An allocator for std::vector whose storage starts on an A-byte boundary:
// tables the kernels read as whole vectors (risk-array rows) then never split
// a vector across two cache lines.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace marginkit {

template <class T, std::size_t A>
struct AlignedAllocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, A>;
  };
  AlignedAllocator() noexcept = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, A>&) noexcept {}  // NOLINT: converting, as std::allocator
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{A}));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    ::operator delete(p, n * sizeof(T), std::align_val_t{A});
  }
  friend bool operator==(const AlignedAllocator&, const AlignedAllocator&) noexcept { return true; }
  friend bool operator!=(const AlignedAllocator&, const AlignedAllocator&) noexcept { return false; }
};

// A vector of doubles on a cache-line boundary.
template <class T>
using CacheAlignedVector = std::vector<T, AlignedAllocator<T, 64>>;

}  // namespace marginkit
