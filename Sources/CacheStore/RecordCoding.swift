/// Little helpers to write and read the store's binary records (big-endian integers,
/// length-prefixed strings). Decoding never traps: truncated or malformed input is a
/// `StoreError.corruptRecord`, so a damaged record is skipped instead of crashing the server.
struct RecordWriter {
    private(set) var bytes: [UInt8] = []

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
    let context: String

    init(_ bytes: [UInt8], context: String) {
        self.bytes = bytes
        self.context = context
    }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func u8() throws -> UInt8 { try integer() }
    mutating func u16() throws -> UInt16 { try integer() }
    mutating func u32() throws -> UInt32 { try integer() }
    mutating func u64() throws -> UInt64 { try integer() }
    mutating func f64() throws -> Double { Double(bitPattern: try integer()) }

    mutating func string32() throws -> String {
        let count = Int(try u32())
        guard count <= bytes.count - offset else { throw StoreError.corruptRecord(context) }
        let value = String(decoding: bytes[offset..<offset + count], as: UTF8.self)
        offset += count
        return value
    }

    private mutating func integer<T: FixedWidthInteger>() throws -> T {
        let size = MemoryLayout<T>.size
        guard bytes.count - offset >= size else { throw StoreError.corruptRecord(context) }
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
