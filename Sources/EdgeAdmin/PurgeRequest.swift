import CacheStore
import Foundation
import HTTPCaching

/// The body of `POST /purge`, checked field by field: exactly one of `url`, `prefix` or
/// `tags`, and an optional boolean `soft`. Anything else is a 400 naming the problem.
package struct PurgeRequest: Equatable {
    var target: Purge.Target
    var soft: Bool

    struct Invalid: Error, Equatable {
        let message: String
        init(_ message: String) { self.message = message }
    }

    static let fields: Set<String> = ["url", "prefix", "tags", "soft"]

    /// A value quoted for an error message, control characters escaped.
    static func quoted(_ text: String) -> String {
        "\""
            + String(text.prefix(200)).unicodeScalars.map {
                $0.isASCII && $0.value >= 0x20 && $0.value != 0x7F ? String($0) : $0.escaped(asASCII: true)
            }.joined() + "\""
    }

    /// A URL as Outpost keys it. Outpost speaks plain HTTP to its clients (TLS ends in front of
    /// it), so every key is `http://`; an `https://` URL names the same object and is keyed as
    /// such (its default port, 443, dropped first).
    package static func cacheKey(_ url: String) -> String? {
        // A request target is visible ASCII (RFC 9112 §3.2): anything else names nothing
        // stored, and must not reach the log as it is.
        guard url.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }), let key = CacheKey(absoluteURI: url) else {
            return nil
        }
        return CacheKey(scheme: "http", authority: key.authority, pathAndQuery: key.pathAndQuery).description
    }

    /// Any JSON object key.
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The fields as JSON gave them (types checked strictly: `"soft": 1` is not a boolean).
    private struct Fields: Decodable {
        var values: [String: Value] = [:]

        enum Value {
            case string(String)
            case strings([String])
            case bool(Bool)
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            for key in container.allKeys {
                guard PurgeRequest.fields.contains(key.stringValue) else {
                    throw Invalid(
                        "unknown field \(PurgeRequest.quoted(key.stringValue)): expected url, prefix or tags, and soft")
                }
                switch key.stringValue {
                case "soft":
                    guard let flag = try? container.decode(Bool.self, forKey: key) else {
                        throw Invalid("\"soft\" must be true or false")
                    }
                    values["soft"] = .bool(flag)
                case "tags":
                    guard let tags = try? container.decode([String].self, forKey: key) else {
                        throw Invalid("\"tags\" must be an array of strings")
                    }
                    values["tags"] = .strings(tags)
                default:
                    guard let text = try? container.decode(String.self, forKey: key) else {
                        throw Invalid("\"\(key.stringValue)\" must be a string")
                    }
                    values[key.stringValue] = .string(text)
                }
            }
        }
    }

    static func parse(_ body: [UInt8]) throws(Invalid) -> PurgeRequest {
        guard !body.isEmpty else { throw Invalid("empty body: expected a JSON object") }
        let fields: Fields
        do {
            fields = try JSONDecoder().decode(Fields.self, from: Data(body))
        } catch let error as Invalid {
            throw error
        } catch DecodingError.typeMismatch {
            throw Invalid("the body must be a JSON object")
        } catch {
            throw Invalid("the body is not valid JSON")
        }
        let object = fields.values
        var soft = false
        if case .bool(let flag)? = object["soft"] { soft = flag }
        let given = ["url", "prefix", "tags"].filter { object[$0] != nil }
        guard given.count == 1 else {
            throw Invalid(
                given.isEmpty
                    ? "nothing to purge: give one of url, prefix or tags"
                    : "give only one of url, prefix or tags (got \(given.joined(separator: ", ")))")
        }
        switch given[0] {
        case "url":
            guard case .string(let text)? = object["url"] else { throw Invalid("\"url\" must be a string") }
            guard let key = PurgeRequest.cacheKey(text) else {
                throw Invalid("\"url\" must be an absolute http:// or https:// URL, got \(PurgeRequest.quoted(text))")
            }
            return PurgeRequest(target: .url(key), soft: soft)
        case "prefix":
            guard case .string(let text)? = object["prefix"] else { throw Invalid("\"prefix\" must be a string") }
            guard let key = PurgeRequest.cacheKey(text) else {
                throw Invalid(
                    "\"prefix\" must start with http:// or https:// and a host, got \(PurgeRequest.quoted(text))")
            }
            return PurgeRequest(target: .prefix(key), soft: soft)
        default:
            guard case .strings(let list)? = object["tags"] else {
                throw Invalid("\"tags\" must be an array of strings")
            }
            guard !list.isEmpty else { throw Invalid("\"tags\" is empty: give at least one tag") }
            var tags: [String] = []
            var seen = Set<String>()
            for tag in list {
                guard SurrogateKeys.isValid(tag) else {
                    throw Invalid(
                        "invalid tag \(PurgeRequest.quoted(tag)): 1 to 200 visible ASCII characters, no spaces or commas"
                    )
                }
                if seen.insert(tag).inserted { tags.append(tag) }
            }
            return PurgeRequest(target: .tags(tags), soft: soft)
        }
    }
}
