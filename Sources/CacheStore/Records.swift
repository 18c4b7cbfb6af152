import HTTPCaching

// The records of the cache schema, and their byte layouts. Integers are big-endian; a
// "string32" is a u32 byte count followed by that many UTF-8 bytes. Every record starts with
// its own version byte so that a later format can be recognised rather than misread.
//
// Every value (records and body chunks) is sealed: followed by the u64 XXH3 checksum of its
// bytes (Checksum.swift), written in the same transaction and verified on every read. A value
// whose checksum does not match is never used (docs/architecture.md, "Store integrity").
//
// Databases (named LMDB databases inside one environment):
//
//   meta     "format"            → UTF-8 "outpost-store/4" (not sealed: read before anything else)
//            "usage"             → UsageRecord
//            "ballast"           → 256 KiB of zeros (not sealed): pages given up first when the disk is full
//   entries  digest16(primary)   → EntryRecord    one per URL: its variants
//   objects  u64 objectID        → ObjectRecord   one per stored response
//   chunks   u64 objectID ‖ u32 index → body bytes (at most chunk_size each), sealed
//   access   u64 objectID        → AccessRecord   LRU position and counters
//   lru      u64 tick ‖ u64 objectID → (empty)    ascending tick = least recently used first
//   pending  u64 objectID        → (empty)        chunks written, object not yet committed
//   urls     urlKey(primary)     → (empty)        every entry, in URL order (prefix purges)
//   tags     tag ‖ 0x00 ‖ digest16(primary) → (empty)  entries carrying a Surrogate-Key/Cache-Tag
//   urlKey = the primary key's first 400 UTF-8 bytes ‖ digest16(primary) (LMDB keys are
//   bounded; the full key is in the entry and is what a prefix is compared with).
//
// EntryRecord (version 1):
//   u8 version=1 | string32 primaryKey | u16 variantCount |
//   variantCount × ( u64 objectID | string32 secondaryKey | string32 varyNames ("\n"-joined) )
//   Variants are ordered newest first; a lookup takes the first that matches.
//
// ObjectRecord (version 3):
//   u8 version=3 | u8 flags (reserved, 0) | u16 status | f64 requestTime | f64 responseTime |
//   f64 storedAt | u64 bodyLength | u32 chunkSize | u32 chunkCount | string32 primaryKey |
//   string32 secondaryKey | u16 headerCount | headerCount × ( string32 name | string32 value ) |
//   u16 alternateCount | alternateCount × ( string32 coding | u64 chunkOwner | u64 length | u32 chunkCount ) |
//   f64 softPurgedAt (0 when the object was never soft-purged)
//   The body as received is the primary representation (chunks under the object's own id);
//   alternates are the same content in another coding, produced by this cache, with chunks
//   under their own owner id.
//
// AccessRecord (version 1):
//   u8 version=1 | u64 tick | u64 hits | f64 lastAccess
//
// UsageRecord (version 1):
//   u8 version=1 | u64 bytes | u64 objects | u64 evictions | u64 nextObjectID | u64 nextTick

enum StoreFormat {
    /// Format 4 added the checksums. Stores of formats 1 to 3 hold values without them, which
    /// this version cannot verify: they are refused, or moved aside under
    /// `store.on_corruption = "reset"` (``CacheStore/init(configuration:)``).
    static let identifier = "outpost-store/4"
}

public struct VariantRef: Sendable, Equatable {
    var objectID: UInt64
    var secondaryKey: String
    var varyNames: [String]

    /// Whether a request with these headers selects this variant (RFC 9111 §4.1). A response
    /// without Vary matches every request without building a key.
    public func matches(_ requestHeaders: HeaderFields) -> Bool {
        if varyNames.isEmpty { return secondaryKey.isEmpty }
        return Vary(fieldNames: varyNames).secondaryKey(for: requestHeaders) == secondaryKey
    }
}

struct EntryRecord: Sendable, Equatable {
    var primaryKey: String
    var variants: [VariantRef]

    func encoded() -> [UInt8] {
        var writer = RecordWriter()
        writer.u8(1)
        writer.string32(primaryKey)
        writer.u16(UInt16(variants.count))
        for variant in variants {
            writer.u64(variant.objectID)
            writer.string32(variant.secondaryKey)
            writer.string32(variant.varyNames.joined(separator: "\n"))
        }
        return writer.sealed
    }

    init(primaryKey: String, variants: [VariantRef]) {
        self.primaryKey = primaryKey
        self.variants = variants
    }

    init(decoding bytes: [UInt8]) throws {
        var reader = try RecordReader(sealed: bytes, context: "entry")
        guard try reader.u8() == 1 else { throw StoreError.corruptRecord("entry version") }
        primaryKey = try reader.string32()
        let count = Int(try reader.u16())
        variants = []
        for _ in 0..<count {
            let id = try reader.u64()
            let secondary = try reader.string32()
            let vary = try reader.string32()
            variants.append(
                VariantRef(
                    objectID: id, secondaryKey: secondary,
                    varyNames: vary.isEmpty ? [] : vary.split(separator: "\n").map(String.init)))
        }
    }
}

/// The same content in another content coding, stored beside the body as received.
public struct Alternate: Sendable, Equatable {
    /// The content coding (`br`, `gzip`).
    public var coding: String
    /// The id its chunks are stored under.
    public var chunkOwner: UInt64
    public var length: Int
    public var chunkCount: Int

    public init(coding: String, chunkOwner: UInt64, length: Int, chunkCount: Int) {
        self.coding = coding
        self.chunkOwner = chunkOwner
        self.length = length
        self.chunkCount = chunkCount
    }
}

/// A stored response's metadata as the store hands it out.
public struct ObjectRecord: Sendable, Equatable {
    public var id: UInt64
    public var primaryKey: String
    public var secondaryKey: String
    public var response: StoredResponse
    public var storedAt: Double
    public var bodyLength: Int
    public var chunkSize: Int
    public var chunkCount: Int
    /// Other codings of the same content, produced by this cache.
    public var alternates: [Alternate] = []
    /// When a soft purge marked this object stale (it must be revalidated before reuse).
    public var softPurgedAt: Double?

    /// The purge tags the origin gave it (Surrogate-Key, Cache-Tag).
    public var tags: [String] { SurrogateKeys.tags(in: response.headers) }

    /// Bytes this object counts against max_store_size: body, headers and a fixed overhead for
    /// its records.
    public var cost: Int {
        bodyLength + alternates.reduce(0) { $0 + $1.length + 64 } + primaryKey.utf8.count + secondaryKey.utf8.count
            + response.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 8 } + 256
    }

    func encoded() -> [UInt8] {
        var writer = RecordWriter(capacity: 512)
        writer.u8(3)
        // Flags: bit 0, a lifetime cap follows the soft-purge time.
        writer.u8(response.lifetimeCap != nil ? 1 : 0)
        writer.u16(UInt16(clamping: response.status))
        writer.f64(response.requestTime)
        writer.f64(response.responseTime)
        writer.f64(storedAt)
        writer.u64(UInt64(bodyLength))
        writer.u32(UInt32(chunkSize))
        writer.u32(UInt32(chunkCount))
        writer.string32(primaryKey)
        writer.string32(secondaryKey)
        writer.u16(UInt16(clamping: response.headers.count))
        for field in response.headers.prefix(Int(UInt16.max)) {
            writer.string32(field.name)
            writer.string32(field.value)
        }
        writer.u16(UInt16(clamping: alternates.count))
        for alternate in alternates {
            writer.string32(alternate.coding)
            writer.u64(alternate.chunkOwner)
            writer.u64(UInt64(alternate.length))
            writer.u32(UInt32(alternate.chunkCount))
        }
        writer.f64(softPurgedAt ?? 0)
        if let cap = response.lifetimeCap { writer.u64(UInt64(clamping: max(0, cap))) }
        return writer.sealed
    }

    init(
        id: UInt64, primaryKey: String, secondaryKey: String, response: StoredResponse, storedAt: Double,
        bodyLength: Int, chunkSize: Int, chunkCount: Int
    ) {
        self.id = id
        self.primaryKey = primaryKey
        self.secondaryKey = secondaryKey
        self.response = response
        self.storedAt = storedAt
        self.bodyLength = bodyLength
        self.chunkSize = chunkSize
        self.chunkCount = chunkCount
    }

    init(id: UInt64, decoding bytes: [UInt8]) throws {
        var reader = try RecordReader(sealed: bytes, context: "object \(id)")
        guard try reader.u8() == 3 else { throw StoreError.corruptRecord("object \(id) version") }
        let flags = try reader.u8()
        let status = Int(try reader.u16())
        let requestTime = try reader.f64()
        let responseTime = try reader.f64()
        self.id = id
        storedAt = try reader.f64()
        bodyLength = Int(try reader.u64())
        chunkSize = Int(try reader.u32())
        chunkCount = Int(try reader.u32())
        primaryKey = try reader.string32()
        secondaryKey = try reader.string32()
        let headerCount = Int(try reader.u16())
        var headers = HeaderFields()
        for _ in 0..<headerCount {
            let name = try reader.string32()
            headers.add(name, try reader.string32())
        }
        response = StoredResponse(
            status: status, headers: headers, requestTime: requestTime, responseTime: responseTime)
        let count = Int(try reader.u16())
        for _ in 0..<count {
            let coding = try reader.string32()
            let owner = try reader.u64()
            let length = Int(try reader.u64())
            let chunks = Int(try reader.u32())
            alternates.append(Alternate(coding: coding, chunkOwner: owner, length: length, chunkCount: chunks))
        }
        let purgedAt = try reader.f64()
        softPurgedAt = purgedAt > 0 ? purgedAt : nil
        if flags & 1 != 0 { response.lifetimeCap = Int64(clamping: try reader.u64()) }
    }
}

struct AccessRecord: Sendable, Equatable {
    var tick: UInt64
    var hits: UInt64
    var lastAccess: Double

    func encoded() -> [UInt8] {
        var writer = RecordWriter(capacity: 25)
        writer.u8(1)
        writer.u64(tick)
        writer.u64(hits)
        writer.f64(lastAccess)
        return writer.sealed
    }

    init(tick: UInt64, hits: UInt64, lastAccess: Double) {
        self.tick = tick
        self.hits = hits
        self.lastAccess = lastAccess
    }

    init(decoding bytes: [UInt8]) throws {
        var reader = try RecordReader(sealed: bytes, context: "access")
        guard try reader.u8() == 1 else { throw StoreError.corruptRecord("access version") }
        tick = try reader.u64()
        hits = try reader.u64()
        lastAccess = try reader.f64()
    }
}

/// Store-wide counters, kept in the same transactions that change them.
public struct StoreUsage: Sendable, Equatable {
    public var bytes: UInt64 = 0
    public var objects: UInt64 = 0
    public var evictions: UInt64 = 0
    var nextObjectID: UInt64 = 1
    var nextTick: UInt64 = 1

    func encoded() -> [UInt8] {
        var writer = RecordWriter(capacity: 41)
        writer.u8(1)
        writer.u64(bytes)
        writer.u64(objects)
        writer.u64(evictions)
        writer.u64(nextObjectID)
        writer.u64(nextTick)
        return writer.sealed
    }

    public init() {}

    init(decoding bytes: [UInt8]) throws {
        var reader = try RecordReader(sealed: bytes, context: "usage")
        guard try reader.u8() == 1 else { throw StoreError.corruptRecord("usage version") }
        self.bytes = try reader.u64()
        objects = try reader.u64()
        evictions = try reader.u64()
        nextObjectID = try reader.u64()
        nextTick = try reader.u64()
    }
}
