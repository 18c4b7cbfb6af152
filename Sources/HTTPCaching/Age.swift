/// The age calculation of RFC 9111 §4.2.3, on the cache's clock.
public enum Age {
    /// current_age, in seconds (fractional: the store keeps sub-second request and response
    /// times; the Age field sent to clients is its whole part).
    ///
    /// - apparent_age = max(0, response_time - date_value)
    /// - corrected_age_value = age_value + (response_time - request_time)
    /// - corrected_initial_age = max(apparent_age, corrected_age_value)
    /// - current_age = corrected_initial_age + (now - response_time)
    public static func current(of response: StoredResponse, now: Double) -> Double {
        current(correctedInitialAge: correctedInitialAge(of: response), responseTime: response.responseTime, now: now)
    }

    /// corrected_initial_age: the part of the age fixed when the response was received (so a
    /// hit that keeps it need not parse Date and Age again).
    public static func correctedInitialAge(of response: StoredResponse) -> Double {
        let date = response.dateValue.map(Double.init) ?? response.responseTime
        let apparentAge = max(0, response.responseTime - date)
        let responseDelay = max(0, response.responseTime - response.requestTime)
        let correctedAgeValue = Double(response.ageValue ?? 0) + responseDelay
        return max(apparentAge, correctedAgeValue)
    }

    /// current_age = corrected_initial_age + resident_time.
    public static func current(correctedInitialAge: Double, responseTime: Double, now: Double) -> Double {
        correctedInitialAge + max(0, now - responseTime)
    }

    /// The value of the Age field for a response served from storage.
    public static func headerValue(_ age: Double) -> String {
        String(Int64(min(max(0, age), Double(DeltaSeconds.maximum))))
    }
}
