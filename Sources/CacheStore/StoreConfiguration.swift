/// What to do with a store that fails the integrity check at open (`store.on_corruption`).
public enum CorruptionPolicy: String, Sendable, Equatable, CaseIterable {
    /// Refuse to open it, saying what is wrong (the default: an operator's files are never
    /// moved unasked).
    case refuse
    /// Move its files aside (kept for inspection) and start with an empty store: a cache can
    /// refill from the origin, so an unattended node keeps serving.
    case reset
}

/// Whether the store can write.
public enum WriteHealth: Sendable, Equatable {
    case ok
    /// The file system refuses the store's writes (full, over quota): responses are served
    /// and not stored; a write is tried again every ``retryInterval`` seconds.
    case degraded(Degraded)

    public struct Degraded: Sendable, Equatable {
        public var reason: String
        /// Since when (seconds since 1970).
        public var since: Double
        /// Batches of writes that failed since then.
        public var failedCommits: Int
        var lastAttempt: Double
    }

    /// Seconds between attempts to write an object while degraded.
    static let retryInterval: Double = 10
}

/// What opening a damaged store did under ``CorruptionPolicy/reset``.
public struct StoreRecovery: Sendable, Equatable {
    /// What the check found.
    public var reason: String
    /// Where the damaged files went.
    public var movedTo: String
}

/// How a store is opened and bounded. Every limit here is a configuration key (docs/configuration.md).
public struct StoreConfiguration: Sendable, Equatable {
    /// Directory of the LMDB environment; created when missing (writable stores only).
    public var path: String
    /// Upper bound on the bytes the stored objects count for (`max_store_size`). The writer
    /// evicts least recently used objects to stay under it.
    public var maxStoreSize: Int
    /// Objects larger than this are served but not stored (`max_object_size`).
    public var maxObjectSize: Int
    /// Body chunk size in LMDB (`chunk_size`); bodies up to this size are read in one lookup.
    public var chunkSize: Int
    /// Variants kept per URL; past it the oldest variant goes (`max_variants`).
    public var maxVariants: Int
    /// fsync on each commit (`sync_commits`). Off trades durability on power loss (not on a
    /// process crash) for write throughput.
    public var syncCommits: Bool
    /// Bytes of chunk writes that may wait for the writer before streaming writers pause.
    public var writeQueueLimit: Int
    /// Open for inspection only.
    public var readOnly: Bool
    /// Records (entries and objects, each) an event loop keeps decoded for its hits
    /// (`hot_records`); a record whose bytes changed is decoded again, so this bounds memory only.
    public var hotRecords: Int = 16384
    /// Bytes of one-chunk bodies an event loop keeps with its records (`hot_body_bytes`), so
    /// that a hit on an unchanged record does not read and check its body again; 0: none.
    public var hotBodyBytes: Int = 32 << 20
    /// What opening a damaged store does (`on_corruption`).
    public var onCorruption: CorruptionPolicy = .refuse
    /// Bytes of disk kept in a reserve file beside the store (`disk_reserve`), given back when
    /// the file system fills up so that eviction and purges can still write; 0: none.
    public var diskReserve: Int = 8 << 20

    public init(
        path: String, maxStoreSize: Int = 1 << 30, maxObjectSize: Int = 64 << 20, chunkSize: Int = 256 << 10,
        maxVariants: Int = 32, syncCommits: Bool = true, writeQueueLimit: Int = 64 << 20, readOnly: Bool = false
    ) {
        self.path = path
        self.maxStoreSize = maxStoreSize
        self.maxObjectSize = maxObjectSize
        self.chunkSize = chunkSize
        self.maxVariants = maxVariants
        self.syncCommits = syncCommits
        self.writeQueueLimit = writeQueueLimit
        self.readOnly = readOnly
    }

    /// LMDB's map is a hard cap on the file: leave room above max_store_size for B-tree
    /// pages, overflow-page rounding and pages held by readers. MAP_FULL still triggers
    /// eviction and a retry, never a crash.
    var mapSize: Int { max(maxStoreSize + maxStoreSize / 2, 64 << 20) }

    /// The writer evicts down to this when max_store_size is exceeded, so that eviction runs
    /// in batches rather than on every commit.
    var evictionTarget: Int { maxStoreSize - maxStoreSize / 10 }
}
