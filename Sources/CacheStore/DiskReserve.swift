import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A file of `store.disk_reserve` bytes beside the store, allocated on disk when the store
/// opens. When the file system fills up, the writer deletes it: the space it held lets the
/// eviction and purge transactions that free space inside the store grow the data file a
/// little, which a full disk would otherwise refuse (docs/operations.md, "A full disk").
enum DiskReserve {
    static let fileName = "disk-reserve"

    static func path(storePath: String) -> String { storePath + "/" + fileName }

    /// Creates the reserve if it is missing (or sizes it); false when the space is not there
    /// (the store opens anyway).
    @discardableResult
    static func create(storePath: String, bytes: Int) -> Bool {
        let path = path(storePath: storePath)
        guard bytes > 0 else {
            try? FileManager.default.removeItem(atPath: path)
            return true
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        // posix_fallocate allocates the blocks (a sparse file would give nothing back).
        if posix_fallocate(descriptor, 0, off_t(bytes)) != 0 {
            _ = ftruncate(descriptor, 0)
            try? FileManager.default.removeItem(atPath: path)
            return false
        }
        return true
    }

    /// Deletes the reserve; true when there was one.
    @discardableResult
    static func release(storePath: String) -> Bool {
        (try? FileManager.default.removeItem(atPath: path(storePath: storePath))) != nil
    }
}
