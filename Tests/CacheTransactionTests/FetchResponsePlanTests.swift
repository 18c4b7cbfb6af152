import HTTPCaching
import Testing

@testable import CacheTransaction

/// What a fetch does with the response it got, from its head alone.
@Suite("CacheTransaction: the plan for a fetched response")
struct FetchResponsePlanTests {
    static let maxObjectSize = 1000
    static let rangeFetchMaxSize = 500

    @Test(
        "storing and the range window, by length and Range",
        arguments: [
            (StoreDecision.store, Int?(100), false, FetchResponsePlan.proceed(storage: .store, rangeLength: nil)),
            (.store, nil, false, .proceed(storage: .store, rangeLength: nil)),
            (
                .store, 1001, false,
                .proceed(storage: .doNotStore(reason: "larger than max_object_size"), rangeLength: nil)
            ),
            (.store, 1000, false, .proceed(storage: .store, rangeLength: nil)),
            // The first reason not to store stays the reason.
            (
                .doNotStore(reason: "private"), 1001, false,
                .proceed(storage: .doNotStore(reason: "private"), rangeLength: nil)
            ),
            (.store, 100, true, .proceed(storage: .store, rangeLength: 100)),
            (.store, 500, true, .proceed(storage: .store, rangeLength: 500)),
            (.store, 501, true, .fetchRangeAlone),
            (.doNotStore(reason: "no-store"), 501, true, .fetchRangeAlone),
            // Without a length the body is read whole and the client gets all of it.
            (.store, nil, true, .proceed(storage: .store, rangeLength: nil)),
        ] as [(StoreDecision, Int?, Bool, FetchResponsePlan)])
    func table(storage: StoreDecision, length: Int?, rangeRequested: Bool, expected: FetchResponsePlan) {
        let plan = FetchResponsePlan.decide(
            storage: storage, declaredLength: length, rangeRequested: rangeRequested,
            maxObjectSize: Self.maxObjectSize, rangeFetchMaxSize: Self.rangeFetchMaxSize)
        #expect(plan == expected)
    }

    @Test("an object over max_object_size with a range under range_fetch_max_size: cut, not stored")
    func rangeOfUnstorable() {
        let plan = FetchResponsePlan.decide(
            storage: .store, declaredLength: 400, rangeRequested: true, maxObjectSize: 300, rangeFetchMaxSize: 500)
        #expect(plan == .proceed(storage: .doNotStore(reason: "larger than max_object_size"), rangeLength: 400))
    }
}
