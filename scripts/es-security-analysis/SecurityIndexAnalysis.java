package essync.servers;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import org.apache.lucene.analysis.LowerCaseFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.miscellaneous.RemoveDuplicatesTokenFilter;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

/**
 * The four analysis components that Elasticsearch's security index (users, roles, API keys)
 * names in its mapping, which the integ-test-zip distribution lacks (they live in its
 * analysis-common module, not published to Maven Central): the `uax_url_email` tokenizer and the
 * `pattern_capture`, `lowercase` and `unique` token filters, built on the Lucene classes of the
 * same names. Test servers only: a full distribution has the real ones.
 */
public class SecurityIndexAnalysis extends Plugin implements AnalysisPlugin {
    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email", (index, env, name, settings) -> TokenizerFactory.newFactory(name, UAX29URLEmailTokenizer::new));
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "pattern_capture", AnalysisPlugin.requiresAnalysisSettings((index, env, name, settings) -> {
                List<Pattern> patterns = new ArrayList<>();
                for (String pattern : settings.getAsList("patterns")) {
                    patterns.add(Pattern.compile(pattern));
                }
                boolean preserveOriginal = settings.getAsBoolean("preserve_original", true);
                Pattern[] all = patterns.toArray(new Pattern[0]);
                return filter(name, input -> new PatternCaptureGroupTokenFilter(input, preserveOriginal, all));
            }),
            "lowercase", (index, env, name, settings) -> filter(name, LowerCaseFilter::new),
            "unique", (index, env, name, settings) -> filter(name, RemoveDuplicatesTokenFilter::new)
        );
    }

    private static TokenFilterFactory filter(String name, java.util.function.UnaryOperator<TokenStream> create) {
        return new TokenFilterFactory() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public TokenStream create(TokenStream input) {
                return create.apply(input);
            }
        };
    }
}
