import CacheStore

/// Rendezvous (highest random weight) hashing: which node of a peer group owns a cache key
/// (docs/fleet.md). Each node scores each key; the highest score owns it, the next takes it
/// when the owner is down. Adding a node to N moves only the keys the new node now wins,
/// about 1/(N+1) of them, and removing one moves only its own keys; no virtual nodes needed.
///
/// Pure and stable across processes and builds: 64-bit FNV-1a of the key and of the node's
/// URL, mixed with MurmurHash3's finaliser (`KeyDigest.mix`) (every node of a fleet must rank alike).
package enum Rendezvous {
    /// A node's seed: the hash of its URL as configured (`http://host:port`).
    package static func seed(_ node: String) -> UInt64 { KeyDigest.mix(fnv1a(node)) }

    /// The key's hash, computed once per lookup and scored against every node.
    package static func keyHash(_ key: String) -> UInt64 { fnv1a(key) }

    /// A node's score for a key.
    package static func score(keyHash: UInt64, seed: UInt64) -> UInt64 { KeyDigest.mix(keyHash ^ seed) }

    /// Indices of `seeds` from the key's owner down (ties broken by position).
    package static func ranking(_ key: String, seeds: [UInt64]) -> [Int] {
        let hash = keyHash(key)
        let scores = seeds.map { score(keyHash: hash, seed: $0) }
        return scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
    }

    private static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
