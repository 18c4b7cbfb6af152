/// Reproducible pseudo-random bytes (xorshift64), eight at a time.
///
/// Tests build bodies of up to 160 MB between them; a byte-at-a-time generator in a debug
/// build kept one of the concurrency pool's two threads busy for seconds, long enough for
/// other tests' origins to miss their response deadlines.
public func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        guard let base = buffer.baseAddress else {
            initialized = 0
            return
        }
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        let raw = UnsafeMutableRawPointer(base)
        var offset = 0
        while offset < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            if count - offset >= 8 {
                raw.storeBytes(of: state.littleEndian, toByteOffset: offset, as: UInt64.self)
                offset += 8
            } else {
                var word = state
                while offset < count {
                    base[offset] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    offset += 1
                }
            }
        }
        initialized = count
    }
}
