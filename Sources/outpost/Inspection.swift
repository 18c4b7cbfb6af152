import CacheStore
import CacheTransaction
import EdgeAdmin
import Foundation
import HTTPCaching
import OutpostConfig

/// What `outpost inspect` reports: read from a store (opened read-only beside a running
/// server), with freshness computed by the same rules the server applies.
public struct Inspection {
    let store: CacheStore
    let configuration: OutpostConfiguration
    let now: Double

    public init(store: CacheStore, configuration: OutpostConfiguration, now: Double = Date().timeIntervalSince1970) {
        self.store = store
        self.configuration = configuration
        self.now = now
    }

    // MARK: list

    public struct ListedEntry: Codable, Equatable, Sendable {
        public var url: String
        public var variants: Int
        public var bytes: Int
    }

    public func list(prefix: String = "", tag: String? = nil, limit: Int = 1000) throws -> [ListedEntry] {
        // A prefix that is a URL is normalised like a purge prefix; anything else is taken as typed.
        let normalised = prefix.isEmpty ? "" : PurgeRequest.cacheKey(prefix) ?? prefix
        return try store.primaryKeys(prefix: normalised, tag: tag, limit: limit).map { key in
            let variants = try store.variants(key)
            return ListedEntry(url: key, variants: variants.count, bytes: variants.reduce(0) { $0 + $1.cost })
        }
    }

    // MARK: show

    public struct StoredCoding: Codable, Equatable, Sendable {
        public var coding: String
        public var bytes: Int
    }

    public struct VariantReport: Codable, Equatable, Sendable {
        public var objectID: UInt64
        /// The request values Vary selected this variant by (empty: the response has no Vary).
        /// nil values: the request that stored it did not have the field.
        package var selectedBy: [RequestExplanation.Field]
        public var status: Int
        public var headers: [[String]]
        public var etag: String?
        public var lastModified: String?
        public var storedAt: String
        public var age: Int64
        public var freshnessLifetime: Int64
        public var freshnessSource: String
        /// Seconds of freshness left; negative: stale by that many seconds.
        public var freshnessLeft: Int64
        public var fresh: Bool
        public var staleWhileRevalidate: Int64?
        public var staleIfError: Int64?
        /// must-revalidate, proxy-revalidate, s-maxage or no-cache: never served stale.
        public var neverServedStale: Bool
        public var softPurgedAt: String?
        /// Content-Range of a stored part (a 206), nil for a complete response.
        public var part: String?
        public var codings: [StoredCoding]
        public var tags: [String]
        public var hits: UInt64
        public var lastAccess: String?
    }

    public struct EntryReport: Codable, Equatable, Sendable {
        public var url: String
        public var variants: [VariantReport]
    }

    /// Everything stored for one URL (given as clients reach it), or nil.
    public func show(url: String) throws -> EntryReport? {
        let key = PurgeRequest.cacheKey(url) ?? url
        let variants = try store.variants(key)
        guard !variants.isEmpty else { return nil }
        return EntryReport(url: key, variants: try variants.map(report))
    }

    private func report(_ record: ObjectRecord) throws -> VariantReport {
        let response = record.response
        let cacheControl = TargetedCacheControl.governing(response.headers, targets: configuration.targetedFields)
        var lifetime = FreshnessLifetime.of(
            response, cacheControl: cacheControl, configuration: configuration.freshness)
        if let purgedAt = record.softPurgedAt {
            lifetime = Reuse.softPurged(lifetime, stored: response, purgedAt: purgedAt)
        }
        let age = Age.current(of: response, now: now)
        let left = lifetime.remaining(atAge: age)
        let access = try store.accessInfo(id: record.id)
        var codings = [
            StoredCoding(coding: response.headers["Content-Encoding"] ?? "identity", bytes: record.bodyLength)
        ]
        codings += record.alternates.map { StoredCoding(coding: $0.coding, bytes: $0.length) }
        func window(_ name: String) -> Int64? {
            if case .value(let seconds) = cacheControl.seconds(name) { return seconds }
            return nil
        }
        return VariantReport(
            objectID: record.id,
            selectedBy: RequestExplanation.Field.selecting(fromSecondaryKey: record.secondaryKey),
            status: response.status,
            headers: response.headers.map { [$0.name, $0.value] },
            etag: response.headers["ETag"],
            lastModified: response.headers["Last-Modified"],
            storedAt: HTTPDate.format(Int64(record.storedAt)),
            age: Int64(age.rounded(.down)),
            freshnessLifetime: lifetime.seconds,
            freshnessSource: lifetime.source.rawValue,
            freshnessLeft: left,
            fresh: left > 0,
            staleWhileRevalidate: window("stale-while-revalidate"),
            staleIfError: window("stale-if-error"),
            neverServedStale: Reuse.forbidsStale(cacheControl),
            softPurgedAt: record.softPurgedAt.map { HTTPDate.format(Int64($0)) },
            part: response.status == 206 ? response.headers["Content-Range"] : nil,
            codings: codings,
            tags: record.tags,
            hits: access?.hits ?? 0,
            lastAccess: access.map { HTTPDate.format(Int64($0.lastAccess)) })
    }

    // MARK: explain

    /// What the node would do with this request now (``RequestExplanation``).
    func explain(url: String, method: String, headers: [(String, String)]) throws -> RequestExplanation {
        let key = PurgeRequest.cacheKey(url) ?? url
        let requestHeaders = HeaderFields(headers)
        let variants = try store.variants(key)
        var selected: ObjectRecord?
        if case .found(let record, _) = try store.lookup(key, requestHeaders: requestHeaders) { selected = record }
        return RequestExplanation.explain(
            url: key, method: method, requestHeaders: requestHeaders, variants: variants, selected: selected,
            configuration: configuration, now: now)
    }

    static func table(_ explanation: RequestExplanation) -> String {
        var rows: [[String]] = [
            ["request", "\(explanation.method) \(explanation.url)"],
            [
                "action",
                explanation.action + (explanation.forward.map { " (fwd=\($0))" } ?? "")
                    + (explanation.status.map { ", status \($0)" } ?? ""),
            ],
        ]
        if let index = explanation.selectedVariant {
            let fields = explanation.selectedBy ?? []
            rows.append([
                "variant",
                "\(index) of \(explanation.variants)"
                    + (fields.isEmpty
                        ? " (no Vary)"
                        : ", selected by " + RequestExplanation.Field.shown(fields)),
            ])
        } else if explanation.variants > 0 {
            rows.append(["variant", "none of \(explanation.variants) matches"])
        }
        for mismatch in explanation.varyMismatches ?? [] {
            rows.append([
                "  variant \(mismatch.variant)",
                "\(mismatch.field): stored for \(mismatch.stored.map { "\"\($0)\"" } ?? "(absent)"), "
                    + "this request has \(mismatch.request.map { "\"\($0)\"" } ?? "(absent)")",
            ])
        }
        if let freshness = explanation.freshness {
            rows.append([
                "freshness",
                freshness.fresh
                    ? "fresh for \(freshness.left) s of \(freshness.lifetime) s (\(freshness.source)), age \(freshness.age) s"
                    : "stale by \(-freshness.left) s (lifetime \(freshness.lifetime) s, \(freshness.source)), age \(freshness.age) s",
            ])
        }
        func window(_ window: RequestExplanation.Window?) -> String {
            guard let window else { return "-" }
            return "\(window.seconds) s" + (window.applies ? " (applies now)" : "")
        }
        if explanation.freshness != nil {
            rows.append([
                "stale windows",
                "while-revalidate \(window(explanation.staleWhileRevalidate)), if-error \(window(explanation.staleIfError))",
            ])
        }
        if let coding = explanation.coding { rows.append(["coding", coding]) }
        if let range = explanation.range { rows.append(["range", range]) }
        if let conditional = explanation.revalidateWith, !conditional.isEmpty {
            rows.append([
                "revalidate with", conditional.map { "\($0.field): \($0.value ?? "")" }.joined(separator: ", "),
            ])
        }
        var out = align(rows)
        out += "why:\n"
        for reason in explanation.reasons { out += "  - \(reason)\n" }
        return out
    }

    // MARK: stats

    public struct StoreReport: Codable, Equatable, Sendable {
        public var path: String
        public var entries: Int
        public var objects: UInt64
        public var bytes: UInt64
        public var evictions: UInt64
        /// Hits recorded on the objects now stored.
        public var hits: UInt64
        public var fileBytes: Int
    }

    public func stats() throws -> StoreReport {
        let usage = try store.usage()
        let fileBytes =
            (try? FileManager.default.attributesOfItem(atPath: store.configuration.path + "/data.mdb")[.size] as? Int)
            ?? 0
        return StoreReport(
            path: store.configuration.path, entries: try store.entryCount(), objects: usage.objects,
            bytes: usage.bytes, evictions: usage.evictions, hits: try store.totalHits(), fileBytes: fileBytes)
    }

    // MARK: output

    public static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public static func table(_ entries: [ListedEntry]) -> String {
        var rows = [["URL", "VARIANTS", "BYTES"]]
        rows += entries.map { [$0.url, String($0.variants), String($0.bytes)] }
        return align(rows)
    }

    public static func table(_ report: EntryReport) -> String {
        var out = "\(report.url): \(report.variants.count) variant\(report.variants.count == 1 ? "" : "s")\n"
        for (index, variant) in report.variants.enumerated() {
            out += "\nvariant \(index + 1) (object \(variant.objectID))\n"
            var rows: [[String]] = []
            let selection =
                variant.selectedBy.isEmpty ? "(no Vary)" : RequestExplanation.Field.shown(variant.selectedBy)
            rows.append(["selected by", selection])
            rows.append(["status", String(variant.status) + (variant.part.map { " (part: \($0))" } ?? "")])
            rows.append(["validators", "etag \(variant.etag ?? "-"), last-modified \(variant.lastModified ?? "-")"])
            rows.append(["stored at", variant.storedAt])
            rows.append(["age", "\(variant.age) s"])
            rows.append([
                "freshness",
                variant.fresh
                    ? "fresh for \(variant.freshnessLeft) s of \(variant.freshnessLifetime) s (\(variant.freshnessSource))"
                    : "stale by \(-variant.freshnessLeft) s (lifetime \(variant.freshnessLifetime) s, \(variant.freshnessSource))",
            ])
            rows.append([
                "stale windows",
                "while-revalidate \(variant.staleWhileRevalidate.map { "\($0) s" } ?? "-"), "
                    + "if-error \(variant.staleIfError.map { "\($0) s" } ?? "-")"
                    + (variant.neverServedStale ? " (never served stale)" : ""),
            ])
            if let purged = variant.softPurgedAt { rows.append(["soft purged", purged]) }
            rows.append(["codings", variant.codings.map { "\($0.coding) \($0.bytes) B" }.joined(separator: ", ")])
            rows.append(["tags", variant.tags.isEmpty ? "-" : variant.tags.joined(separator: " ")])
            rows.append(["hits", "\(variant.hits), last access \(variant.lastAccess ?? "-")"])
            out += align(rows.map { ["  " + $0[0], $0[1]] })
            out += "  headers:\n"
            for header in variant.headers { out += "    \(header[0]): \(header[1])\n" }
        }
        return out
    }

    public static func table(_ report: StoreReport) -> String {
        align([
            ["store", report.path], ["entries", String(report.entries)], ["objects", String(report.objects)],
            ["bytes", String(report.bytes)], ["file bytes", String(report.fileBytes)],
            ["evictions", String(report.evictions)], ["hits (stored objects)", String(report.hits)],
        ])
    }

    static func align(_ rows: [[String]]) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = Array(repeating: 0, count: columns)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
