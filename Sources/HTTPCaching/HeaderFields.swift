/// An ordered list of HTTP header fields with case-insensitive lookup.
///
/// The caching rules need three views of a field: its raw lines (to store and forward them as
/// received), its combined value (RFC 9110 §5.3: several lines of a list field are one
/// comma-separated list) and its list members. Names are compared case-insensitively (RFC 9110
/// §5.1) but kept as sent.
public struct HeaderFields: Sendable, Equatable, Sequence {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public private(set) var fields: [Field]

    public init() { self.fields = [] }

    public init(_ pairs: [(String, String)]) {
        self.fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    public init(fields: [Field]) { self.fields = fields }

    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }

    public var count: Int { fields.count }

    /// Every line of the named field, in order.
    public func values(_ name: String) -> [String] {
        fields.compactMap { $0.name.equalsIgnoringASCIICase(name) ? $0.value : nil }
    }

    /// The first line of the named field.
    public subscript(_ name: String) -> String? {
        fields.first(where: { $0.name.equalsIgnoringASCIICase(name) })?.value
    }

    public func contains(_ name: String) -> Bool {
        fields.contains(where: { $0.name.equalsIgnoringASCIICase(name) })
    }

    /// All lines combined into one comma-separated value (RFC 9110 §5.3), or nil when absent.
    public func combined(_ name: String) -> String? {
        guard let first = fields.firstIndex(where: { $0.name.equalsIgnoringASCIICase(name) }) else { return nil }
        let rest = fields[(first + 1)...]
        guard rest.contains(where: { $0.name.equalsIgnoringASCIICase(name) }) else { return fields[first].value }
        return values(name).joined(separator: ", ")
    }

    /// The members of a list field across all its lines, trimmed, empty members dropped
    /// (RFC 9110 §5.6.1). Commas inside quoted strings do not split.
    public func listMembers(_ name: String) -> [String] {
        values(name).flatMap { HeaderFields.splitList($0) }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces every line of the field with one line (appended where the first one stood).
    public mutating func replace(_ name: String, with value: String) {
        if let index = fields.firstIndex(where: { $0.name.equalsIgnoringASCIICase(name) }) {
            fields[index].value = value
            var seen = false
            fields.removeAll { field in
                guard field.name.equalsIgnoringASCIICase(name) else { return false }
                if !seen {
                    seen = true
                    return false
                }
                return true
            }
        } else {
            add(name, value)
        }
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { $0.name.equalsIgnoringASCIICase(name) }
    }

    public mutating func remove(where predicate: (Field) -> Bool) {
        fields.removeAll(where: predicate)
    }

    /// Splits one field line on commas that are outside quoted strings.
    public static func splitList(_ line: String) -> [String] {
        // Byte by byte: the delimiters are ASCII, which never occurs inside a multi-byte UTF-8
        // sequence, and fields are octets (RFC 9110 §5.5); walking Characters instead cost
        // grapheme breaking on every byte of every list field.
        var members: [String] = []
        let bytes = line.utf8
        var start = bytes.startIndex
        var inQuotes = false
        var escaped = false
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if escaped {
                escaped = false
            } else if inQuotes && byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inQuotes.toggle()
            } else if byte == UInt8(ascii: ",") && !inQuotes {
                let trimmed = Substring(bytes[start..<index]).trimmingOWS()
                if !trimmed.isEmpty { members.append(String(trimmed)) }
                start = bytes.index(after: index)
            }
            bytes.formIndex(after: &index)
        }
        let trimmed = Substring(bytes[start...]).trimmingOWS()
        if !trimmed.isEmpty { members.append(String(trimmed)) }
        return members
    }
}

extension String {
    /// Whether any of the string's UTF-8 bytes passes `test`: a loop over its contiguous bytes
    /// where it has them (native strings do), else through the view. The field checks run on
    /// every request; through the view they cost about 150 instructions a short value, over the
    /// bytes a few dozen (tools/bench-instructions).
    @inlinable
    public func containsUTF8Byte(where test: (UInt8) -> Bool) -> Bool {
        utf8.withContiguousStorageIfAvailable { $0.contains(where: test) } ?? utf8.contains(where: test)
    }
}

extension StringProtocol {
    /// ASCII case-insensitive comparison, which is what HTTP field names and tokens use.
    // Inlinable: other modules' calls were left generic, about 800 instructions a comparison
    // instead of a few dozen (tools/bench-instructions).
    @inlinable
    public func equalsIgnoringASCIICase<Other: StringProtocol>(_ other: Other) -> Bool {
        let lhs = self.utf8
        let rhs = other.utf8
        guard lhs.count == rhs.count else { return false }
        // Header names are compared on every lookup: compare the contiguous bytes when both
        // strings have them (native strings do), byte by byte through the views otherwise.
        if let equal = lhs.withContiguousStorageIfAvailable({ left in
            rhs.withContiguousStorageIfAvailable { right in
                for index in 0..<left.count where left[index] != right[index] {
                    guard Self.sameLetter(left[index], right[index]) else { return false }
                }
                return true
            }
        }), let equal {
            return equal
        }
        for (a, b) in zip(lhs, rhs) where a != b {
            guard Self.sameLetter(a, b) else { return false }
        }
        return true
    }

    /// Two different bytes that are the same ASCII letter in different case.
    @usableFromInline
    static func sameLetter(_ a: UInt8, _ b: UInt8) -> Bool {
        a | 0x20 == b | 0x20 && (a | 0x20) >= 0x61 && (a | 0x20) <= 0x7A
    }

    /// Lower-cases ASCII letters only.
    public func asciiLowercased() -> String {
        String(decoding: self.utf8.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Trims optional whitespace (SP and HTAB, RFC 9110 §5.6.3).
    public func trimmingOWS() -> SubSequence {
        // On the bytes: SP and HTAB are ASCII (see `HeaderFields.splitList`).
        // (The generic UTF-8 view only walks forwards: the end is the position after the last
        // byte that is not OWS.)
        let bytes = utf8
        var start = bytes.startIndex
        while start < bytes.endIndex, bytes[start] == 0x20 || bytes[start] == 0x09 { bytes.formIndex(after: &start) }
        var end = start
        var index = start
        while index < bytes.endIndex {
            let byte = bytes[index]
            bytes.formIndex(after: &index)
            if byte != 0x20 && byte != 0x09 { end = index }
        }
        return self[start..<end]
    }
}
