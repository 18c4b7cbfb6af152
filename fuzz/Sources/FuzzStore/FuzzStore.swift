import CacheStore
import Foundation
import FuzzDriver
import HTTPCaching

/// A store's data file: the input is written as data.mdb and opened read-only, walked with
/// `verify()` and looked up. A damaged file must be refused or read without trapping (the
/// structure check runs before liblmdb maps the file), and records must decode or be reported.
private let directory: String = {
    let path = NSTemporaryDirectory() + "outpost-fuzz-store-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStore(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    try? FileManager.default.removeItem(atPath: directory + "/lock.mdb")
    guard FileManager.default.createFile(atPath: directory + "/data.mdb", contents: Data(bytes: data, count: size))
    else { return 0 }
    var configuration = StoreConfiguration(path: directory)
    configuration.readOnly = true
    guard let store = try? CacheStore(configuration: configuration) else { return 0 }
    defer { store.close() }
    _ = try? store.verify()
    for key in (try? store.primaryKeys(limit: 8)) ?? [] {
        if case .found(let record, _)? = try? store.lookup(key, requestHeaders: HeaderFields()) {
            for index in 0..<min(record.chunkCount, 4) { _ = try? store.readChunk(objectID: record.id, index: index) }
        }
    }
    _ = try? store.primaryKeys(tag: "t1")
    return 0
}

@main
enum FuzzMain {
    static func main() { runFuzzer(fuzzStore) }
}
