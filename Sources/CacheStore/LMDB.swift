import CLMDB
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

// The only file that touches liblmdb. Everything else in Outpost sees `LMDBEnvironment`,
// `LMDBTransaction` and byte arrays / ByteBuffers, never MDB_val or raw pointers.
//
// Rules kept here (see docs/architecture.md): environments open with MDB_NOTLS so a read
// transaction is not tied to a thread's slot; a transaction lives inside one synchronous
// closure (never across an await); values are copied out before the transaction ends because
// MDB_val points into the map.

/// An LMDB failure with the operation that produced it.
public struct LMDBError: Error, CustomStringConvertible, Equatable {
    public let code: Int32
    public let operation: String

    public var description: String {
        let message = String(cString: mdb_strerror(code))
        return "LMDB \(operation) failed: \(message) (\(code))"
    }

    public var isMapFull: Bool { code == MDB_MAP_FULL }
    /// The file system refused the write: no space (ENOSPC), over a quota (EDQUOT), over the
    /// process's file-size limit (EFBIG), or a short write, which liblmdb reports as EIO (a
    /// full disk often takes part of a write first; a failing disk is handled the same way:
    /// stop writing, keep serving).
    public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT || code == EFBIG || code == EIO }
    /// The file is not an LMDB environment, or one of another LMDB version.
    public var isInvalidFile: Bool { code == MDB_INVALID || code == MDB_VERSION_MISMATCH }

    static func check(_ code: Int32, _ operation: String) throws {
        if code != MDB_SUCCESS { throw LMDBError(code: code, operation: operation) }
    }
}

/// A named database inside an environment.
public struct LMDBDatabase: Sendable {
    fileprivate let dbi: MDB_dbi
}

/// An open LMDB environment. Thread-safe as LMDB is: any thread may run read transactions;
/// the caller guarantees a single writer.
public final class LMDBEnvironment: @unchecked Sendable {
    private let env: OpaquePointer
    fileprivate var handle: OpaquePointer { env }
    public let readOnly: Bool
    private var closed = false

    /// Opens (creating when writable) the environment in directory `path`.
    public init(path: String, mapSize: Int, maxDatabases: Int, readOnly: Bool, syncCommits: Bool = true) throws {
        var handle: OpaquePointer?
        try LMDBError.check(mdb_env_create(&handle), "mdb_env_create")
        guard let handle else { throw LMDBError(code: MDB_PANIC, operation: "mdb_env_create") }
        do {
            try LMDBError.check(mdb_env_set_maxdbs(handle, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs")
            try LMDBError.check(mdb_env_set_mapsize(handle, mapSize), "mdb_env_set_mapsize")
            try LMDBError.check(mdb_env_set_maxreaders(handle, 1022), "mdb_env_set_maxreaders")
            var flags = UInt32(MDB_NOTLS) | UInt32(MDB_NORDAHEAD)
            if readOnly { flags |= UInt32(MDB_RDONLY) }
            if !syncCommits { flags |= UInt32(MDB_NOSYNC) }
            try LMDBError.check(mdb_env_open(handle, path, flags, 0o640), "mdb_env_open(\(path))")
        } catch {
            mdb_env_close(handle)
            throw error
        }
        self.env = handle
        self.readOnly = readOnly
        // Readers left behind by a killed process would pin old pages forever.
        var dead: Int32 = 0
        _ = mdb_reader_check(handle, &dead)
    }

    deinit { close() }

    public func close() {
        guard !closed else { return }
        closed = true
        mdb_env_close(env)
    }

    /// Flushes the data to disk (used at shutdown when commits are not synced).
    public func sync() throws { try LMDBError.check(mdb_env_sync(env, 1), "mdb_env_sync") }

    /// Opens a named database; `create` only in a writable environment.
    public func openDatabase(_ name: String, create: Bool) throws -> LMDBDatabase {
        let body: (LMDBTransaction) throws -> LMDBDatabase = { txn in
            var dbi: MDB_dbi = 0
            let flags = create ? UInt32(MDB_CREATE) : 0
            try LMDBError.check(mdb_dbi_open(txn.txn, name, flags, &dbi), "mdb_dbi_open(\(name))")
            return LMDBDatabase(dbi: dbi)
        }
        // A DBI handle opened in a transaction survives only if that transaction commits, so a
        // read-only environment commits its (read-only) transaction too.
        let txn = try LMDBTransaction(env: env, readOnly: readOnly)
        do {
            let database = try body(txn)
            try txn.commit()
            return database
        } catch {
            txn.abort()
            throw error
        }
    }

    /// Runs `body` in a read-only transaction that ends when it returns.
    public func read<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        let txn = try LMDBTransaction(env: env, readOnly: true)
        defer { txn.abort() }
        return try body(txn)
    }

    /// Runs `body` in a write transaction, committed when it returns, aborted when it throws.
    public func write<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        let txn = try LMDBTransaction(env: env, readOnly: false)
        do {
            let result = try body(txn)
            try txn.commit()
            return result
        } catch {
            txn.abort()
            throw error
        }
    }

    public struct Info: Sendable {
        public var mapSize: Int
        public var usedBytes: Int
        public var pageSize: Int
    }

    public func info() -> Info {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &stat)
        let pageSize = Int(stat.ms_psize)
        return Info(mapSize: info.me_mapsize, usedBytes: (info.me_last_pgno + 1) * pageSize, pageSize: pageSize)
    }
}

/// A read transaction kept for reuse by one thread at a time (an event loop): reset between
/// reads and renewed for the next (`mdb_txn_reset` / `mdb_txn_renew`), so a read costs no
/// allocation and no reader-slot lookup. A reset transaction pins no pages; a renewed one is
/// reset again before ``read(_:)`` returns, so a reader never outlives the call that used it
/// (an open reader would keep the writer from reusing pages and make the map grow).
public final class LMDBReader {
    private let transaction: LMDBTransaction
    private var closed = false

    public init(environment: LMDBEnvironment) throws {
        transaction = try LMDBTransaction(env: environment.handle, readOnly: true)
        mdb_txn_reset(transaction.txn)
    }

    /// Runs `body` in the renewed transaction; values it sees are valid until it returns.
    public func read<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        guard !closed else { throw LMDBError(code: MDB_BAD_TXN, operation: "read after close") }
        try LMDBError.check(mdb_txn_renew(transaction.txn), "mdb_txn_renew")
        defer { mdb_txn_reset(transaction.txn) }
        return try body(transaction)
    }

    /// Frees the transaction; must happen before the environment closes.
    public func close() {
        guard !closed else { return }
        closed = true
        transaction.abort()
    }

    deinit { close() }
}

/// One LMDB transaction. Only valid inside the closure it was handed to.
public final class LMDBTransaction {
    fileprivate let txn: OpaquePointer
    private var finished = false

    fileprivate init(env: OpaquePointer, readOnly: Bool) throws {
        var handle: OpaquePointer?
        try LMDBError.check(
            mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &handle), "mdb_txn_begin")
        self.txn = handle!
    }

    fileprivate func commit() throws {
        finished = true
        try LMDBError.check(mdb_txn_commit(txn), "mdb_txn_commit")
    }

    fileprivate func abort() {
        guard !finished else { return }
        finished = true
        mdb_txn_abort(txn)
    }

    /// The value under `key`, copied out of the map.
    public func get(_ db: LMDBDatabase, _ key: [UInt8]) throws -> [UInt8]? {
        try withValue(db, key) { Array($0) }
    }

    /// What reading a sealed value (``putSealed(_:_:_:)``) found.
    public enum SealedValue {
        case missing
        /// The value's checksum does not match its bytes: it must not be used.
        case corrupt
        case intact(ByteBuffer)
    }

    /// The sealed value under `key`, verified and copied into a ByteBuffer (the one copy out
    /// of the map), without its checksum.
    public func getSealed(_ db: LMDBDatabase, _ key: [UInt8], allocator: ByteBufferAllocator) throws -> SealedValue {
        try key.withUnsafeBytes { try getSealed(db, key: $0, allocator: allocator) }
    }

    /// The same, with the key given as raw bytes (a key built on the stack).
    public func getSealed(
        _ db: LMDBDatabase, key: UnsafeRawBufferPointer, allocator: ByteBufferAllocator
    ) throws -> SealedValue {
        let found = try withValue(db, key: key) { bytes -> SealedValue in
            guard let payload = Checksum.verified(bytes) else { return .corrupt }
            var buffer = allocator.buffer(capacity: payload.count)
            buffer.writeBytes(payload)
            return .intact(buffer)
        }
        return found ?? .missing
    }

    /// Stores `buffer` followed by its checksum, written straight into the space LMDB reserves
    /// for the value (MDB_RESERVE), so sealing costs no extra copy.
    public func putSealed(_ db: LMDBDatabase, _ key: [UInt8], _ buffer: ByteBuffer) throws {
        try withKey(key) { keyVal in
            var value = MDB_val(mv_size: buffer.readableBytes + Checksum.size, mv_data: nil)
            try LMDBError.check(mdb_put(txn, db.dbi, &keyVal, &value, UInt32(MDB_RESERVE)), "mdb_put")
            let destination = UnsafeMutableRawBufferPointer(start: value.mv_data, count: value.mv_size)
            buffer.withUnsafeReadableBytes { Checksum.seal($0, into: destination) }
        }
    }

    /// Hands the value's bytes, still inside the map, to `body`.
    public func withValue<T>(
        _ db: LMDBDatabase, _ key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> T
    ) throws -> T? {
        try key.withUnsafeBytes { try withValue(db, key: $0, body) }
    }

    /// The same, with the key given as raw bytes (a key built on the stack).
    public func withValue<T>(
        _ db: LMDBDatabase, key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> T
    ) throws -> T? {
        var keyVal = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var value = MDB_val()
        let code = mdb_get(txn, db.dbi, &keyVal, &value)
        if code == MDB_NOTFOUND { return nil }
        try LMDBError.check(code, "mdb_get")
        return try body(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
    }

    public func put(_ db: LMDBDatabase, _ key: [UInt8], _ value: [UInt8]) throws {
        try value.withUnsafeBytes { try put(db, key, bytes: $0) }
    }

    public func put(_ db: LMDBDatabase, _ key: [UInt8], _ buffer: ByteBuffer) throws {
        try buffer.withUnsafeReadableBytes { try put(db, key, bytes: $0) }
    }

    private func put(_ db: LMDBDatabase, _ key: [UInt8], bytes: UnsafeRawBufferPointer) throws {
        try withKey(key) { keyVal in
            var value = MDB_val(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
            try LMDBError.check(mdb_put(txn, db.dbi, &keyVal, &value, 0), "mdb_put")
        }
    }

    /// Deletes `key`; false when it was not there.
    @discardableResult
    public func delete(_ db: LMDBDatabase, _ key: [UInt8]) throws -> Bool {
        try withKey(key) { keyVal in
            let code = mdb_del(txn, db.dbi, &keyVal, nil)
            if code == MDB_NOTFOUND { return false }
            try LMDBError.check(code, "mdb_del")
            return true
        }
    }

    /// Visits entries in key order starting at the first key >= `start` (the first key when
    /// nil), until `body` returns false. Key and value are copied out.
    public func scan(_ db: LMDBDatabase, from start: [UInt8]? = nil, _ body: ([UInt8], [UInt8]) throws -> Bool) throws {
        var cursor: OpaquePointer?
        try LMDBError.check(mdb_cursor_open(txn, db.dbi, &cursor), "mdb_cursor_open")
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var value = MDB_val()
        var startCopy = start ?? []
        var code: Int32 = startCopy.withUnsafeMutableBytes { startBytes in
            if start != nil {
                key = MDB_val(mv_size: startBytes.count, mv_data: startBytes.baseAddress)
                return mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
            }
            return mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        }
        while code == MDB_SUCCESS {
            let keyBytes = Array(UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size))
            let valueBytes = Array(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
            guard try body(keyBytes, valueBytes) else { return }
            code = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        if code != MDB_NOTFOUND { try LMDBError.check(code, "mdb_cursor_get") }
    }

    /// Hands `body` an MDB_val pointing at the key's bytes, valid for the call only.
    private func withKey<T>(_ key: [UInt8], _ body: (inout MDB_val) throws -> T) throws -> T {
        try key.withUnsafeBytes { keyBytes in
            var keyVal = MDB_val(
                mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return try body(&keyVal)
        }
    }

    /// Number of entries in the database.
    public func count(_ db: LMDBDatabase) throws -> Int {
        var stat = MDB_stat()
        try LMDBError.check(mdb_stat(txn, db.dbi, &stat), "mdb_stat")
        return Int(stat.ms_entries)
    }
}
