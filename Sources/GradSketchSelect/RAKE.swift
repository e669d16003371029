import Foundation

/// RAKE, rapid automatic keyword extraction (Rose et al. 2010), as PASER uses it for the concepts
/// of an instruction (`rake_nltk`'s defaults): the lower-cased text is cut into candidate phrases
/// at stopwords and punctuation; a word scores degree ÷ frequency, where its degree sums the
/// lengths of the phrases it occurs in (once per occurrence) and its frequency counts those
/// occurrences; a phrase scores the sum of its words' scores.
public enum RAKE {
    /// English function words: articles, pronouns, prepositions, conjunctions, auxiliaries and
    /// common adverbs, and the fragments a split contraction leaves ("don", "t"). Pass a list of
    /// your own (`stopwords:`) to match another tool's exactly.
    public static let englishStopwords: Set<String> = Set("""
    a about above after again against all am an and any are as at be because been before being below between both but by \
    can cannot could did do does doing down during each few for from further had has have having he her here hers herself \
    him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or \
    other our ours ourselves out over own same she should so some such than that the their theirs them themselves then \
    there these they this those through to too under until up very was we were what when where which while who whom why \
    will with would you your yours yourself yourselves \
    s t d ll m o re ve y aren couldn didn doesn don hadn hasn haven isn mightn mustn needn shan shouldn wasn weren won wouldn
    """.split(whereSeparator: \.isWhitespace).map(String.init))

    /// Candidate phrases of `text` with their scores, best first (ties in order of first
    /// appearance). A phrase occurring twice is listed once.
    public static func rankedPhrases(_ text: String, stopwords: Set<String> = englishStopwords) -> [(phrase: String, score: Double)] {
        let phrases = candidatePhrases(text, stopwords: stopwords)
        var frequency: [String: Int] = [:], degree: [String: Int] = [:]
        for phrase in phrases {
            for word in phrase {
                frequency[word, default: 0] += 1
                degree[word, default: 0] += phrase.count
            }
        }
        var seen = Set<String>(), ranked: [(phrase: String, score: Double)] = []
        for phrase in phrases {
            let joined = phrase.joined(separator: " ")
            guard seen.insert(joined).inserted else { continue }
            ranked.append((joined, phrase.reduce(0) { $0 + Double(degree[$1]!) / Double(frequency[$1]!) }))
        }
        return ranked.enumerated().sorted { $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset }.map(\.element)
    }

    /// Maximal runs of words that are not stopwords, cut at every punctuation token. Tokens are
    /// runs of word characters (letters, digits, underscore) or runs of other non-space
    /// characters, as NLTK's `wordpunct_tokenize` makes them, so "model's" is "model", "'", "s".
    /// Every punctuation token cuts: `rake_nltk` cuts only at single punctuation characters and
    /// keeps runs such as "..." or ")," as words of a phrase.
    public static func candidatePhrases(_ text: String, stopwords: Set<String> = englishStopwords) -> [[String]] {
        var phrases: [[String]] = [], current: [String] = [], word = ""
        func endPhrase() {
            if !current.isEmpty { phrases.append(current) }
            current = []
        }
        func endWord() {
            guard !word.isEmpty else { return }
            if stopwords.contains(word) { endPhrase() } else { current.append(word) }
            word = ""
        }
        for character in text.lowercased() {
            if character.isLetter || character.isNumber || character == "_" {
                word.append(character)
            } else {
                endWord()
                if !character.isWhitespace { endPhrase() }
            }
        }
        endWord()
        endPhrase()
        return phrases
    }
}
