/// A 128-bit digest of a primary cache key, used as the LMDB key of its entry.
///
/// LMDB keys are limited to 511 bytes, URLs are not; the full key is kept inside the entry
/// record and compared on every lookup, so a digest collision can only cause a miss, never
/// serve one URL's object for another. Two independent 64-bit FNV-1a streams, each finished
/// with a 64-bit avalanche mix (MurmurHash3's fmix64).
package enum KeyDigest {
    /// The digest as two integers (the hit path builds its LMDB key on the stack from it).
    struct Value: Hashable {
        var high: UInt64
        var low: UInt64

        /// The 16 key bytes, big-endian, as `digest(_:)` gives them.
        func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
            try withUnsafeBytes(of: (high.bigEndian, low.bigEndian), body)
        }
    }

    static func digest(_ key: String) -> [UInt8] {
        let value = value(key)
        return value.high.bigEndianBytes + value.low.bigEndianBytes
    }

    static func value(_ key: String) -> Value {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325
        var b: UInt64 = 0x8422_2325_cbf2_9ce4
        for byte in key.utf8 {
            a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 &+ 0x9E37_79B9_7F4A_7C15
        }
        return Value(high: mix(a ^ UInt64(key.utf8.count)), low: mix(b))
    }

    /// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit (also the
    /// peers' rendezvous scores, `Rendezvous`).
    package static func mix(_ value: UInt64) -> UInt64 {
        var k = value
        k ^= k >> 33
        k = k &* 0xff51_afd7_ed55_8ccd
        k ^= k >> 33
        k = k &* 0xc4ce_b9fe_1a85_ec53
        k ^= k >> 33
        return k
    }
}
