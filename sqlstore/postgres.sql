-- SQLite built-ins that renkei's queries use and PostgreSQL lacks, defined under the same names so that one text of
-- SQL runs on both (see dialect.go). Applied, replacing older definitions, every time renkei opens the database.

-- glob(pattern, text) is SQLite's `text GLOB pattern`: * matches any run of characters, ? one character, [...] one
-- of a set ([^...] one not in it, a-z a range); case-sensitive; the whole text must match.
CREATE OR REPLACE FUNCTION glob_regex(pattern text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $body$
DECLARE
    re text := '^';
    i int := 1;
    n int := length(pattern);
    c text;
    j int;
    s0 int;
BEGIN
    WHILE i <= n LOOP
        c := substr(pattern, i, 1);
        IF c = '*' THEN
            re := re || '.*';
        ELSIF c = '?' THEN
            re := re || '.';
        ELSIF c = '[' THEN
            -- A set ends at the first ']' after its first character (which may itself be ']').
            j := i + 1;
            IF substr(pattern, j, 1) = '^' THEN
                j := j + 1;
            END IF;
            j := j + 1;
            WHILE j <= n AND substr(pattern, j, 1) <> ']' LOOP
                j := j + 1;
            END LOOP;
            IF j > n THEN
                RETURN '[^\s\S]'; -- an unterminated set matches nothing, as in SQLite
            END IF;
            re := re || '[';
            i := i + 1;
            IF substr(pattern, i, 1) = '^' THEN
                re := re || '^';
                i := i + 1;
            END IF;
            s0 := i;
            WHILE i < j LOOP
                c := substr(pattern, i, 1);
                IF c = '-' AND i > s0 AND i + 1 < j THEN
                    re := re || '-'; -- a range
                ELSIF c IN ('\', '[', ']', '^', '-') THEN
                    re := re || '\' || c;
                ELSE
                    re := re || c;
                END IF;
                i := i + 1;
            END LOOP;
            re := re || ']';
        ELSIF c ~ '[.^$|()\[\]{}+\\]' THEN
            re := re || '\' || c;
        ELSE
            re := re || c;
        END IF;
        i := i + 1;
    END LOOP;
    RETURN re || '$';
END
$body$;

CREATE OR REPLACE FUNCTION glob(pattern text, value text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $body$ SELECT value ~ glob_regex(pattern) $body$;

-- group_concat(value, separator) is SQLite's aggregate: the non-null values joined by separator, NULL if none.
CREATE OR REPLACE FUNCTION group_concat_step(acc text, value text, separator text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $body$
    SELECT CASE WHEN value IS NULL THEN acc WHEN acc IS NULL THEN value ELSE acc || separator || value END
$body$;

CREATE OR REPLACE AGGREGATE group_concat(text, text) (SFUNC = group_concat_step, STYPE = text);
