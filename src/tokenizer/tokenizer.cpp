// Byte-level BPE (GPT-2 byte<->unicode map, merges by rank) with added tokens matched verbatim
// first and PCRE2 (UTF + UCP) pre-tokenizer regexes of GPT-2, Llama-3, Qwen2 and SmolLM.
// NFC (Qwen2) comes from utf8proc when the build found it; without it the input is taken as
// already NFC (docs/model_loading.md). Not a SentencePiece tokenizer.
#include "sharq/tokenizer/tokenizer.h"

#ifdef SHARQ_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#ifdef SHARQ_HAVE_UTF8PROC
#include <utf8proc.h>
#endif

#include <cstdlib>
#include <limits>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "sharq/error.h"

namespace sharq {

namespace {

// Split regexes ("Isolated": matches and the gaps between them both become pieces).
const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// HF's Digits(individual_digits) isolates every numeric character (Rust char::is_numeric = \p{N}).
const char* kDigitRegex = R"(\p{N})";

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xe0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    s += static_cast<char>(0xf0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// Decodes one UTF-8 character at s[i]; sets len. Invalid bytes decode as themselves (len 1)
// with the high bit set to 0x110000 + byte so they never collide with a real code point.
uint32_t next_cp(std::string_view s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  auto cont = [&](size_t k) {
    return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
  };
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k])); };
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  if ((c & 0xe0) == 0xc0 && cont(1)) {
    *len = 2;
    return ((c & 0x1fu) << 6) | (at(1) & 0x3f);
  }
  if ((c & 0xf0) == 0xe0 && cont(1) && cont(2)) {
    *len = 3;
    return ((c & 0x0fu) << 12) | ((at(1) & 0x3f) << 6) | (at(2) & 0x3f);
  }
  if ((c & 0xf8) == 0xf0 && cont(1) && cont(2) && cont(3)) {
    *len = 4;
    return ((c & 0x07u) << 18) | ((at(1) & 0x3f) << 12) | ((at(2) & 0x3f) << 6) | (at(3) & 0x3f);
  }
  *len = 1;
  return 0x110000u + c;
}

// HF's regex engine reads \s as Unicode White_Space, which includes U+0085 (NEL); PCRE2's UCP
// \s does not. White_Space = \t\n\v\f\r, U+0085 and \p{Z}: spell \s and \S out as that set.
std::string with_unicode_whitespace(const char* p) {
  const std::string ws = R"(\t\n\x0B\f\r\x{85}\p{Z})";
  std::string out;
  bool in_class = false;
  for (size_t i = 0; p[i]; ++i) {
    if (p[i] == '\\' && p[i + 1]) {
      const char c = p[i + 1];
      if (c == 's') {
        out += in_class ? ws : "[" + ws + "]";
      } else if (c == 'S' && !in_class) {
        out += "[^" + ws + "]";
      } else {
        out += p[i];
        out += c;
      }
      ++i;
      continue;
    }
    if (p[i] == '[') in_class = true;
    if (p[i] == ']') in_class = false;
    out += p[i];
  }
  return out;
}

#ifdef SHARQ_HAVE_PCRE2
struct Regex {
  pcre2_code* code = nullptr;
  explicit Regex(const char* raw) {
    const std::string pattern = with_unicode_whitespace(raw);
    int err = 0;
    PCRE2_SIZE off = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw Error(std::string("tokenizer: PCRE2 cannot compile the pre-tokenizer regex: ") +
                  reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back if absent
  }
  ~Regex() { pcre2_code_free(code); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
};
#else
// Built without PCRE2: there is no regex engine, so no tokenizer can be made.
struct Regex {
  explicit Regex(const char*) {
    throw Error("tokenizer: sharq was built without PCRE2 (apt-get install libpcre2-dev)");
  }
};
#endif

}  // namespace

struct Tokenizer::Impl {
  model::TokenizerData data;
  std::unordered_map<std::string, int32_t> token_to_id;
  std::vector<std::string> bytes_of;  // id -> raw bytes
  std::vector<bool> is_special;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, merged)
  std::string byte_char[256];                                        // byte -> UTF-8 of its char
  std::unordered_map<uint32_t, uint8_t> char_byte;                   // code point -> byte
  std::vector<std::pair<std::string, int32_t>> specials;             // content, id
  std::vector<std::unique_ptr<Regex>> regexes;
  bool nfc = false;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void build_byte_map() {
    // GPT-2: printable Latin-1 bytes map to themselves, the other 68 to U+0100 onwards.
    bool direct[256] = {};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xa1; b <= 0xac; ++b) direct[b] = true;
    for (int b = 0xae; b <= 0xff; ++b) direct[b] = true;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = direct[b] ? static_cast<uint32_t>(b) : next++;
      append_utf8(byte_char[b], cp);
      char_byte[cp] = static_cast<uint8_t>(b);
    }
  }

  std::string decode_token(const std::string& tok) const {
    std::string out;
    for (size_t i = 0; i < tok.size();) {
      size_t len;
      const uint32_t cp = next_cp(tok, i, &len);
      auto it = char_byte.find(cp);
      if (it != char_byte.end()) {
        out += static_cast<char>(it->second);
      } else {
        out.append(tok, i, len);  // not a byte-level char: keep its UTF-8, as HF's decoder does
      }
      i += len;
    }
    return out;
  }

  // Splits `s` by each regex in turn; pieces are byte ranges of s.
  std::vector<std::string_view> pretokenize(std::string_view s) const {
    std::vector<std::string_view> pieces{s};
#ifdef SHARQ_HAVE_PCRE2
    pcre2_match_data* md = nullptr;
    for (const auto& re : regexes) {
      if (!md) md = pcre2_match_data_create_from_pattern(re->code, nullptr);
      std::vector<std::string_view> next;
      for (std::string_view p : pieces) {
        size_t pos = 0, last = 0;
        while (pos <= p.size()) {
          const int rc = pcre2_match(re->code, reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                                     pos, 0, md, nullptr);
          if (rc < 0) break;  // no more matches (or a match error: the rest becomes one piece)
          const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
          const size_t b = ov[0], e = ov[1];
          if (e == b) {  // empty match: step one byte and keep looking
            pos = b + 1;
            continue;
          }
          if (b > last) next.push_back(p.substr(last, b - last));
          next.push_back(p.substr(b, e - b));
          last = pos = e;
        }
        if (last < p.size()) next.push_back(p.substr(last));
      }
      pieces.swap(next);
    }
    if (md) pcre2_match_data_free(md);
#endif
    return pieces;
  }

  // Repeatedly merges the lowest-rank adjacent pair, leftmost on ties (HF's order), with a heap
  // of candidate pairs over a linked list: O(n log n), so long pieces cannot stall encode.
  void merge_all(std::vector<int32_t>& sym) const {
    const int n = static_cast<int>(sym.size());
    if (n < 2) return;
    struct Cand {
      int32_t rank;
      int pos;
      int32_t left, right, merged;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
    std::vector<bool> alive(static_cast<size_t>(n), true);
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto consider = [&](int a, int b) {
      if (a < 0 || b < 0) return;
      auto it = merges.find(key(sym[static_cast<size_t>(a)], sym[static_cast<size_t>(b)]));
      if (it != merges.end()) {
        heap.push({it->second.first, a, sym[static_cast<size_t>(a)], sym[static_cast<size_t>(b)],
                   it->second.second});
      }
    };
    for (int i = 0; i < n; ++i) {
      prev[static_cast<size_t>(i)] = i - 1;
      next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
    }
    for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      const auto a = static_cast<size_t>(c.pos);
      if (!alive[a]) continue;
      const int b = next[a];
      // Stale: one side was merged since this pair was queued.
      if (b < 0 || sym[a] != c.left || sym[static_cast<size_t>(b)] != c.right) continue;
      sym[a] = c.merged;
      alive[static_cast<size_t>(b)] = false;
      next[a] = next[static_cast<size_t>(b)];
      if (next[a] >= 0) prev[static_cast<size_t>(next[a])] = c.pos;
      consider(prev[a], c.pos);
      consider(c.pos, next[a]);
    }
    std::vector<int32_t> out;
    for (int i = 0; i >= 0; i = next[static_cast<size_t>(i)])
      out.push_back(sym[static_cast<size_t>(i)]);
    sym.swap(out);
  }

  void bpe(std::string_view piece, std::vector<int32_t>& out) const {
    std::string mapped;
    for (unsigned char c : piece) mapped += byte_char[c];
    {
      std::lock_guard<std::mutex> lock(cache_mu);
      auto it = cache.find(mapped);
      if (it != cache.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> sym;
    auto whole = token_to_id.find(mapped);
    if (data.ignore_merges && whole != token_to_id.end()) {
      sym.push_back(whole->second);
    } else {
      for (unsigned char c : piece) {
        auto it = token_to_id.find(byte_char[c]);
        if (it != token_to_id.end()) sym.push_back(it->second);  // unknown bytes are dropped
      }
      merge_all(sym);
    }
    out.insert(out.end(), sym.begin(), sym.end());
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() > 200000) cache.clear();
    cache.emplace(std::move(mapped), std::move(sym));
  }

  void encode_plain(std::string_view s, std::vector<int32_t>& out) const {
    if (s.empty()) return;
#ifdef SHARQ_HAVE_UTF8PROC
    if (nfc) {
      utf8proc_uint8_t* dst = nullptr;
      const utf8proc_ssize_t n =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                       static_cast<utf8proc_ssize_t>(s.size()), &dst,
                       static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      if (n >= 0) {
        const std::string normalized(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
        std::free(dst);
        for (std::string_view p : pretokenize(normalized)) bpe(p, out);
        return;
      }
      std::free(dst);  // invalid UTF-8: HF cannot even take it; tokenize the bytes as they are
    }
#endif
    for (std::string_view p : pretokenize(s)) bpe(p, out);
  }
};

Tokenizer::Tokenizer(const model::TokenizerData& data) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.data = data;
  const auto n = static_cast<int64_t>(data.vocab.size());
  if (n == 0) throw Error("tokenizer: empty vocab");
  if (n > std::numeric_limits<int32_t>::max()) throw Error("tokenizer: vocab too large");
  const std::string& pre = data.pre_tokenizer;
  if (pre == "gpt2") {
    m.regexes.push_back(std::make_unique<Regex>(kGpt2Regex));
  } else if (pre == "smollm") {
    m.regexes.push_back(std::make_unique<Regex>(kDigitRegex));
    m.regexes.push_back(std::make_unique<Regex>(kGpt2Regex));
  } else if (pre == "llama3") {
    m.regexes.push_back(std::make_unique<Regex>(kLlama3Regex));
  } else if (pre == "qwen2") {
    m.regexes.push_back(std::make_unique<Regex>(kQwen2Regex));
  } else {
    throw Error("tokenizer: unknown pre-tokenizer '" + pre + "' (gpt2, llama3, qwen2, smollm)");
  }
  if (data.normalizer == "NFC") {
    m.nfc = true;
  } else if (!data.normalizer.empty()) {
    throw Error("tokenizer: unknown normalizer '" + data.normalizer + "' (NFC)");
  }
  m.build_byte_map();
  m.is_special.assign(static_cast<size_t>(n), false);
  for (int32_t id : data.special_ids) {
    if (id < 0 || id >= n || data.vocab[static_cast<size_t>(id)].empty()) {
      throw Error("tokenizer: special token id " + std::to_string(id) + " has no content");
    }
    if (m.is_special[static_cast<size_t>(id)]) continue;
    m.is_special[static_cast<size_t>(id)] = true;
    m.specials.emplace_back(data.vocab[static_cast<size_t>(id)], id);
  }
  m.token_to_id.reserve(static_cast<size_t>(n));
  m.bytes_of.resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) {
    const std::string& tok = data.vocab[static_cast<size_t>(i)];
    if (tok.empty()) continue;  // a hole in the id space
    m.token_to_id.emplace(tok, i);
    m.bytes_of[static_cast<size_t>(i)] =
        m.is_special[static_cast<size_t>(i)] ? tok : m.decode_token(tok);
  }
  m.merges.reserve(data.merges.size());
  for (size_t r = 0; r < data.merges.size(); ++r) {
    const auto& [a, b] = data.merges[r];
    auto ia = m.token_to_id.find(a), ib = m.token_to_id.find(b), im = m.token_to_id.find(a + b);
    if (ia == m.token_to_id.end() || ib == m.token_to_id.end() || im == m.token_to_id.end()) {
      throw Error("tokenizer: merge " + std::to_string(r) + " ('" + a + "' '" + b +
                  "') uses a token missing from the vocab");
    }
    // The first (lowest) rank of a repeated pair wins.
    m.merges.emplace(Impl::key(ia->second, ib->second),
                     std::make_pair(static_cast<int32_t>(r), im->second));
  }
  if (data.bos_id < -1 || data.bos_id >= n || data.eos_id < -1 || data.eos_id >= n) {
    throw Error("tokenizer: bos/eos id outside the vocab");
  }
  if (data.add_bos && data.bos_id < 0) throw Error("tokenizer: add_bos without a BOS id");
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  if (add_bos) {
    if (m.data.bos_id < 0) throw Error("tokenizer: add_bos requested but there is no BOS token");
    out.push_back(m.data.bos_id);
  }
  // Leftmost, then longest, special token; next_at caches each token's next occurrence.
  std::vector<size_t> next_at(m.specials.size(), 0);
  std::vector<bool> fresh(m.specials.size(), false);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos, best_len = 0;
    int32_t best_id = -1;
    for (size_t k = 0; k < m.specials.size(); ++k) {
      if (!fresh[k] || (next_at[k] != std::string_view::npos && next_at[k] < pos)) {
        next_at[k] = text.find(m.specials[k].first, pos);
        fresh[k] = true;
      }
      const size_t at = next_at[k];
      const size_t len = m.specials[k].first.size();
      if (at != std::string_view::npos && (at < best || (at == best && len > best_len))) {
        best = at;
        best_len = len;
        best_id = m.specials[k].second;
      }
    }
    if (best == std::string_view::npos) {
      m.encode_plain(text.substr(pos), out);
      break;
    }
    m.encode_plain(text.substr(pos, best - pos), out);
    out.push_back(best_id);
    pos = best + best_len;
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(impl_->bytes_of.size())) {
    throw Error("tokenizer: token id " + std::to_string(id) + " outside the vocab of " +
                std::to_string(impl_->bytes_of.size()));
  }
  return impl_->bytes_of[static_cast<size_t>(id)];
}

int32_t Tokenizer::bos_id() const {
  return impl_->data.bos_id;
}
int32_t Tokenizer::eos_id() const {
  return impl_->data.eos_id;
}
bool Tokenizer::add_bos_default() const {
  return impl_->data.add_bos;
}
int64_t Tokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->data.vocab.size());
}

}  // namespace sharq
