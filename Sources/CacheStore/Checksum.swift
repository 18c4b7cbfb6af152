import CXXHash

/// The checksum every stored value carries (docs/architecture.md, "Store integrity"): the
/// 64-bit XXH3 of the value's bytes, stored big-endian after them, written in the same
/// transaction and checked on every read before a byte is used.
///
/// Why XXH3 rather than CRC32C: it runs near memory bandwidth on any x86-64 or arm64 without
/// a CPU-feature check (the hit path pays it on every body chunk it reads), and its 64 bits
/// make an undetected random corruption (a torn or overwritten page) a 2⁻⁶⁴ event. CRC32C's
/// guarantees for short bursts matter on a wire; a store's damage is whole pages.
enum Checksum {
    /// Bytes the checksum adds to every value.
    static let size = 8

    static func of(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        UInt64(outpost_xxh3_64(bytes.baseAddress, bytes.count))
    }

    /// Writes `bytes` followed by their checksum into `destination` (exactly
    /// `bytes.count + size` bytes).
    static func seal(_ bytes: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count == bytes.count + size)
        if !bytes.isEmpty { destination.copyMemory(from: bytes) }
        let sum = of(bytes).bigEndian
        withUnsafeBytes(of: sum) {
            UnsafeMutableRawBufferPointer(rebasing: destination[bytes.count...]).copyMemory(from: $0)
        }
    }

    /// Appends the checksum of `bytes` to them.
    static func seal(_ bytes: inout [UInt8]) {
        let sum = bytes.withUnsafeBytes { of($0) }
        withUnsafeBytes(of: sum.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// The bytes of a sealed value without its checksum, or nil when the checksum does not
    /// match (or the value is too short to hold one).
    static func verified(_ value: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard value.count >= size else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: value[..<(value.count - size)])
        var stored: UInt64 = 0
        for byte in value[(value.count - size)...] { stored = stored << 8 | UInt64(byte) }
        return of(payload) == stored ? payload : nil
    }
}
