/// Failures of the cache store, each with the context an operator needs.
public enum StoreError: Error, CustomStringConvertible, Equatable {
    /// The directory holds a store written by another, incompatible record format.
    case incompatibleFormat(path: String, found: String, expected: String)
    /// The directory holds something that is not an LMDB environment.
    case notAStore(path: String, reason: String)
    /// The store's data file failed the integrity check at open, or holds an older format
    /// without checksums; `reason` says what was found.
    case damaged(path: String, reason: String)
    /// A record failed to decode; the string says which.
    case corruptRecord(String)
    /// The object is larger than the configured maximum object size.
    case objectTooLarge(limit: Int)
    /// The store was closed.
    case closed
    /// The store could not free enough space for a write.
    case full
    /// The file system refuses the store's writes (full, over quota); the string says how.
    case diskFull(String)
    /// A purge covering the object landed while it was being written; it is not stored.
    case purgedWhileWriting
    /// The change committed, but syncing it to disk failed: a power loss could undo it.
    case notDurable(String)
    case lmdb(LMDBError)

    public var description: String {
        switch self {
        case .incompatibleFormat(let path, let found, let expected):
            return "the store at \(path) has record format \"\(found)\", this Outpost reads \"\(expected)\"; "
                + "point --store at an empty directory or remove the old store"
        case .notAStore(let path, let reason):
            return "\(path) is not an Outpost store: \(reason)"
        case .damaged(let path, let reason):
            return "the store at \(path) is damaged: \(reason); move it aside or remove it, or set "
                + "store.on_corruption = \"reset\" to have Outpost move it aside and start empty"
        case .corruptRecord(let what): return "corrupt record: \(what)"
        case .objectTooLarge(let limit): return "object larger than max_object_size (\(limit) bytes)"
        case .closed: return "the store is closed"
        case .full: return "the store is full and nothing could be evicted"
        case .diskFull(let reason): return "not stored while the disk is full: \(reason)"
        case .purgedWhileWriting: return "a purge covering the object landed while it was being written"
        case .notDurable(let reason): return "committed, but syncing the store to disk failed: \(reason)"
        case .lmdb(let error): return error.description
        }
    }
}
