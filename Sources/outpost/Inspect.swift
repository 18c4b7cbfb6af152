import ArgumentParser
import CacheStore
import EdgeProxy
import Foundation
import OutpostConfig

/// `outpost inspect`: reads the store read-only (also while `outpost serve` runs on it).
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look inside a store: what is held, for which URL, and why.",
        subcommands: [List.self, Show.self, Explain.self, Stats.self, Verify.self])

    struct StoreOptions: ParsableArguments {
        @Option(help: "Store directory (store.path of the running server).")
        var store: String

        @Option(help: "Configuration file, for the freshness rules (heuristics, targeted field).")
        var config: String?

        @Flag(help: "Print JSON for scripts instead of a table.")
        var json = false

        func open() throws -> (CacheStore, OutpostConfiguration) {
            var configuration: OutpostConfiguration
            do {
                configuration = try config.map(ConfigurationLoader.load(path:)) ?? OutpostConfiguration()
            } catch let error as ConfigurationError {
                throw ValidationError(error.message)
            }
            configuration.store.path = store
            configuration.store.readOnly = true
            do {
                return (try CacheStore(configuration: configuration.store), configuration)
            } catch {
                throw ValidationError("cannot open the store: \(error)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the stored URLs.")

        @OptionGroup var options: StoreOptions

        @Option(help: "Only URLs starting with this (e.g. http://example.com/docs/).")
        var prefix: String?

        @Option(help: "Only URLs with a variant carrying this Surrogate-Key / Cache-Tag.")
        var tag: String?

        @Option(help: "At most this many URLs.")
        var limit = 1000

        func run() throws {
            let (store, configuration) = try options.open()
            defer { store.close() }
            let entries = try Inspection(store: store, configuration: configuration).list(
                prefix: prefix ?? "", tag: tag, limit: limit)
            print(
                options.json ? try Inspection.json(entries) : Inspection.table(entries),
                terminator: options.json ? "\n" : "")
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say what Outpost would do with a request, and why, from the store as it is now.",
            discussion: """
                Which variant the request selects (and which Vary field decided), fresh or stale and by \
                which directive and how many seconds, whether stale-while-revalidate or stale-if-error \
                would apply, which coding and range would be served, or why it would go upstream.
                """)

        @Argument(help: "The URL as clients reach it, e.g. http://example.com/path?q.")
        var url: String

        @Option(
            name: [.customShort("H"), .customLong("header")], help: "A request header, 'Name: value' (repeatable).")
        var headers: [String] = []

        @Option(help: "The request method (GET, HEAD, ...).")
        var method = "GET"

        @OptionGroup var options: StoreOptions

        func run() throws {
            var fields: [(String, String)] = []
            for header in headers {
                guard let colon = header.firstIndex(of: ":"), colon != header.startIndex else {
                    throw ValidationError("-H \"\(header)\": expected 'Name: value'")
                }
                fields.append(
                    (
                        String(header[..<colon]).trimmingCharacters(in: .whitespaces),
                        String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                    ))
            }
            let (store, configuration) = try options.open()
            defer { store.close() }
            let explanation = try Inspection(store: store, configuration: configuration).explain(
                url: url, method: method.uppercased(), headers: fields)
            print(
                options.json ? try Inspection.json(explanation) : Inspection.table(explanation),
                terminator: options.json ? "\n" : "")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every variant stored for a URL: what selected it, its headers, freshness and codings.")

        @Argument(help: "The URL as clients reach it, e.g. http://example.com/path?q.")
        var url: String

        @OptionGroup var options: StoreOptions

        func run() throws {
            let (store, configuration) = try options.open()
            defer { store.close() }
            guard let report = try Inspection(store: store, configuration: configuration).show(url: url) else {
                throw ValidationError("nothing is stored for \(url)")
            }
            print(
                options.json ? try Inspection.json(report) : Inspection.table(report),
                terminator: options.json ? "\n" : "")
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store statistics: entries, objects, bytes, hits.")

        @OptionGroup var options: StoreOptions

        func run() throws {
            let (store, configuration) = try options.open()
            defer { store.close() }
            let report = try Inspection(store: store, configuration: configuration).stats()
            print(
                options.json ? try Inspection.json(report) : Inspection.table(report),
                terminator: options.json ? "\n" : "")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the whole store: its file structure, every record and every body chunk's checksum.",
            discussion: "Exits 0 when the store is intact, 1 when anything is damaged (each damaged value is listed).")

        @Option(help: "Store directory (store.path of the running server).")
        var store: String

        @Flag(help: "Print JSON for scripts instead of text.")
        var json = false

        func run() throws {
            var configuration = StoreConfiguration(path: store)
            configuration.readOnly = true
            let opened: CacheStore
            do {
                opened = try CacheStore(configuration: configuration)
            } catch StoreError.damaged(_, let reason) {
                report(intact: false, lines: ["the store's data file is damaged: \(reason)"], figures: [:])
                throw ExitCode(1)
            } catch {
                throw ValidationError("cannot open the store: \(error)")
            }
            defer { opened.close() }
            let result = try opened.verify()
            let lines = result.damaged.map { damage in
                var line = "\(damage.kind): \(damage.what)"
                if let id = damage.objectID { line += ", object \(id)" }
                if let url = damage.url { line += ", \(url)" }
                return line
            }
            report(
                intact: result.isIntact, lines: lines,
                figures: [
                    "pages": result.pages, "entries": result.entries, "objects": result.objects,
                    "chunks": result.chunks,
                ])
            if !result.isIntact { throw ExitCode(1) }
        }

        private func report(intact: Bool, lines: [String], figures: [String: Int]) {
            if json {
                let object: [String: Any] = ["intact": intact, "damaged": lines, "checked": figures]
                if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                    print(String(decoding: data, as: UTF8.self))
                }
                return
            }
            if !figures.isEmpty {
                print(
                    "checked \(figures["pages"] ?? 0) pages, \(figures["entries"] ?? 0) entries, "
                        + "\(figures["objects"] ?? 0) objects, \(figures["chunks"] ?? 0) chunks")
            }
            for line in lines { print("damaged: \(line)") }
            print(intact ? "store intact" : "store damaged: \(lines.count) problem(s)")
        }
    }
}
