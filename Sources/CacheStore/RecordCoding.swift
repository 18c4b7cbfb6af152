/// Little helpers to write and read the store's binary records (big-endian integers,
/// length-prefixed strings), each sealed with a ``Checksum``. Decoding never traps: a record
/// whose checksum does not match, or that is truncated or malformed, is a
/// `StoreError.corruptRecord`, so a damaged record is skipped instead of crashing the server.
struct RecordWriter {
    private var bytes: [UInt8] = []

    /// The record followed by its checksum: what goes into the store.
    var sealed: [UInt8] {
        var sealed = bytes
        Checksum.seal(&sealed)
        return sealed
    }

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { append(value) }
    mutating func u32(_ value: UInt32) { append(value) }
    mutating func u64(_ value: UInt64) { append(value) }
    mutating func f64(_ value: Double) { append(value.bitPattern) }

    mutating func string32(_ value: String) {
        let utf8 = Array(value.utf8)
        u32(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

struct RecordReader {
    private let bytes: [UInt8]
    private var offset = 0
    /// Where the record ends (its checksum, if any, follows).
    private let end: Int
    let context: String

    /// A reader of unsealed bytes (keys).
    init(_ bytes: [UInt8], context: String) {
        self.bytes = bytes
        self.end = bytes.count
        self.context = context
    }

    /// A reader of a sealed record, which must carry a matching checksum.
    init(sealed bytes: [UInt8], context: String) throws {
        let intact = bytes.withUnsafeBytes { Checksum.verified($0) != nil }
        guard intact else { throw StoreError.corruptRecord("\(context): checksum mismatch") }
        self.bytes = bytes
        self.end = bytes.count - Checksum.size
        self.context = context
    }

    mutating func u8() throws -> UInt8 { try integer() }
    mutating func u16() throws -> UInt16 { try integer() }
    mutating func u32() throws -> UInt32 { try integer() }
    mutating func u64() throws -> UInt64 { try integer() }
    mutating func f64() throws -> Double { Double(bitPattern: try integer()) }

    mutating func string32() throws -> String {
        let count = Int(try u32())
        guard count <= end - offset else { throw StoreError.corruptRecord(context) }
        let value = String(decoding: bytes[offset..<offset + count], as: UTF8.self)
        offset += count
        return value
    }

    private mutating func integer<T: FixedWidthInteger>() throws -> T {
        let size = MemoryLayout<T>.size
        guard end - offset >= size else { throw StoreError.corruptRecord(context) }
        var value: T = 0
        for byte in bytes[offset..<offset + size] { value = value << 8 | T(byte) }
        offset += size
        return value
    }
}

extension FixedWidthInteger {
    /// Big-endian bytes, so that LMDB's byte order sorts integer keys numerically.
    var bigEndianBytes: [UInt8] { withUnsafeBytes(of: self.bigEndian) { Array($0) } }
}
