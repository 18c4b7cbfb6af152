import TOMLKit

/// Walks one TOML table, remembering which keys were read so that unknown ones are reported.
///
/// A problem with one key is recorded and the walk goes on, so that every problem of a file
/// is reported at once (``problems``); each accessor still `throws` so that a check made in a
/// closure (`apply`, a table's body) can report by throwing ``ConfigurationError``.
package struct TableReader {
    /// The problems found so far, shared by a reader and the readers of its tables.
    package final class Problems {
        package var list: [String] = []
        package init() {}
    }

    private final class Seen {
        var keys: Set<String> = []
    }

    private let values: TOMLTable
    private let path: String
    private let seen = Seen()
    let problems: Problems

    init(_ values: TOMLTable, path: String, problems: Problems) {
        self.values = values
        self.path = path
        self.problems = problems
    }

    var remainingKeys: [String] { values.keys.filter { !seen.keys.contains($0) }.sorted() }

    /// Runs one key's reading; a ``ConfigurationError`` it throws is recorded, not passed on.
    private func recording(_ work: () throws -> Void) {
        do {
            try work()
        } catch let error as ConfigurationError {
            problems.list += error.problems
        } catch {
            problems.list.append("\(path.isEmpty ? "configuration" : path): \(error)")
        }
    }

    /// Whether `key` holds a table (read it with ``table(_:_:)``).
    func isTable(_ key: String) -> Bool { values[key]?.table != nil }

    /// Letters, digits and `-._~`: what a name written into a header list may hold.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func value(_ key: String) -> TOMLValueConvertible? {
        seen.keys.insert(key)
        return values[key]
    }

    func table(_ key: String, _ body: (inout TableReader) throws -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            guard let nested = raw.table else { throw ConfigurationError("\(name(key)) must be a table") }
            var reader = TableReader(nested, path: name(key), problems: problems)
            reader.recording { try body(&reader) }
            reader.finish()
        }
    }

    /// An array of tables (`[[key]]`); each is read in turn with its label (`key[0]`, ...).
    func tables(_ key: String, _ body: (inout TableReader, String) throws -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            guard let array = raw.array else { throw ConfigurationError("\(name(key)) must be an array of tables") }
            for (index, element) in array.enumerated() {
                let label = "\(name(key))[\(index)]"
                guard let nested = element.table else {
                    problems.list.append("\(label) must be a table")
                    continue
                }
                var reader = TableReader(nested, path: label, problems: problems)
                reader.recording { try body(&reader, label) }
                reader.finish()
            }
        }
    }

    func string(_ key: String, _ apply: (String) throws -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            guard let text = raw.string else { throw ConfigurationError("\(name(key)) must be a string") }
            try apply(text)
        }
    }

    /// A string naming one of `Choice`'s cases; anything else is an error listing them.
    func oneOf<Choice: RawRepresentable & CaseIterable>(
        _ key: String, _ type: Choice.Type, _ apply: (Choice) -> Void
    ) throws where Choice.RawValue == String {
        recording {
            let qualified = name(key)
            try string(key) { value in
                guard let choice = Choice(rawValue: value) else {
                    throw ConfigurationError(
                        "\(qualified): \"\(value)\" is not one of "
                            + Choice.allCases.map(\.rawValue).joined(separator: ", "))
                }
                apply(choice)
            }
        }
    }

    func stringArray(_ key: String, _ apply: ([String]) -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            guard let array = raw.array else { throw ConfigurationError("\(name(key)) must be an array of strings") }
            var strings: [String] = []
            for element in array {
                guard let text = element.string else {
                    throw ConfigurationError("\(name(key)) must be an array of strings")
                }
                strings.append(text)
            }
            apply(strings)
        }
    }

    /// An array of origin URLs.
    func origins(_ key: String, _ apply: ([OriginURL]) -> Void) throws {
        recording {
            let label = name(key)
            var texts: [String]?
            try stringArray(key) { texts = $0 }
            guard let texts else { return }
            var origins: [OriginURL] = []
            for text in texts {
                guard let origin = OriginURL(parsing: text) else {
                    throw ConfigurationError("\(label): \"\(text)\" is not an http:// or https:// URL")
                }
                origins.append(origin)
            }
            apply(origins)
        }
    }

    func bool(_ key: String, _ apply: (Bool) -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            guard let flag = raw.bool else { throw ConfigurationError("\(name(key)) must be true or false") }
            apply(flag)
        }
    }

    func integer(_ key: String, minimum: Int, _ apply: (Int) -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            guard let number = raw.int, number >= minimum else {
                throw ConfigurationError("\(name(key)) must be a whole number of at least \(minimum)")
            }
            apply(number)
        }
    }

    func number(_ key: String, range: ClosedRange<Double>, _ apply: (Double) -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            guard let number = raw.double ?? raw.int.map(Double.init), range.contains(number) else {
                throw ConfigurationError(
                    "\(name(key)) must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            apply(number)
        }
    }

    func seconds(_ key: String, _ apply: (Double) -> Void) throws {
        recording {
            try number(key, range: 0...86_400 * 365, apply)
        }
    }

    /// A byte count: a whole number, or a string with a unit (`"512MiB"`, `"1GB"`, `"64k"`).
    func size(_ key: String, minimum: Int, _ apply: (Int) throws -> Void) throws {
        recording {
            guard let raw = value(key) else { return }
            let parsed = raw.int ?? raw.string.flatMap(ByteSize.parse)
            guard let bytes = parsed, bytes >= minimum else {
                throw ConfigurationError(
                    "\(name(key)) must be a size of at least \(minimum) bytes (a number, or e.g. \"512MiB\")")
            }
            try apply(bytes)
        }
    }

    func address(_ key: String, _ apply: (SocketAddressSpec) -> Void) throws {
        recording {
            let label = name(key)
            try string(key) { text in
                guard let address = SocketAddressSpec(parsing: text) else {
                    throw ConfigurationError("\(label): \"\(text)\" is not HOST:PORT")
                }
                apply(address)
            }
        }
    }

    func origin(_ key: String, _ apply: (OriginURL) -> Void) throws {
        recording {
            let label = name(key)
            try string(key) { text in
                guard let origin = OriginURL(parsing: text) else {
                    throw ConfigurationError("\(label): \"\(text)\" is not an http:// or https:// origin URL")
                }
                apply(origin)
            }
        }
    }

    func finish() {
        let unknown = remainingKeys
        guard unknown.isEmpty else {
            problems.list.append(
                "unknown configuration key\(unknown.count > 1 ? "s" : ""): \(unknown.map(name).joined(separator: ", "))"
            )
            return
        }
    }
}
