-- swtpm/notes.lua: the lines of a frame's comments, as fields.
--
--   pcr: ...                      the PCR replay (swtpm_extcap/pcapng/notes.py): swtpm.pcr, and for
--                                 "pcr: extend #N PCR i bank = hex" swtpm.pcr.extend/index/bank/value
--   policy: explain: <paragraph>  (pcapng/policynotes.py) why an authorization failed: swtpm.policy.explain, Expert Info
--                                 (error); counted by the statistics
--   policy: digest matches replay / digest MISMATCH (replay <hex>, TPM <hex>) /
--   policy: digest not known to the replay (<why>)
--                                 swtpm.policy.check; a MISMATCH is an Expert Info warning
--   any other line                swtpm.note
-- Lines are found with plain prefix tests; at most MAX_NOTES lines of a frame become items.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local M = {}
local find, sub, match = string.find, string.sub, string.match

M.MAX_NOTES = 256

M.f = {
    pcr = ProtoField.string("swtpm.pcr", "PCR note"),
    pcr_extend = ProtoField.uint32("swtpm.pcr.extend", "PCR extend #"),
    pcr_index = ProtoField.uint32("swtpm.pcr.index", "PCR"),
    pcr_bank = ProtoField.string("swtpm.pcr.bank", "PCR bank"),
    pcr_value = ProtoField.string("swtpm.pcr.value", "PCR value (hex)"),
    explain = ProtoField.string("swtpm.policy.explain", "Policy explanation",
                                "why the TPM refused the authorization (policy replay)"),
    check = ProtoField.string("swtpm.policy.check", "Policy digest check",
                              "the policy session's digest against the replay"),
    note = ProtoField.string("swtpm.note", "Note", "a line of the frame comment"),
}
M.fields = { M.f.pcr, M.f.pcr_extend, M.f.pcr_index, M.f.pcr_bank, M.f.pcr_value, M.f.explain,
             M.f.check, M.f.note }

M.experts = {
    explain = ProtoExpert.new("swtpm.policy.explain.expert", "Authorization failed",
                              expert.group.RESPONSE_CODE, expert.severity.ERROR),
    mismatch = ProtoExpert.new("swtpm.policy.mismatch", "Policy digest differs from the replay",
                               expert.group.SEQUENCE, expert.severity.WARN),
    many = ProtoExpert.new("swtpm.note.too_many", "More comment lines than shown",
                           expert.group.COMMENTS_GROUP, expert.severity.NOTE),
}

-- Every line of the comments (a list of strings), in order, at most `limit`.
local function lines(comments, limit)
    local out = {}
    local extra = 0
    for _, text in ipairs(comments) do
        local start = 1
        while true do
            local nl = find(text, "\n", start, true)
            local line = sub(text, start, nl and nl - 1 or #text)
            if line ~= "" then
                if #out < limit then out[#out + 1] = line else extra = extra + 1 end
            end
            if nl == nil then break end
            start = nl + 1
        end
    end
    return out, extra
end

-- The lines of a frame's comments, from the frame.comment field infos, each line once.
-- Wireshark 4.0 gives one value per comment (lines joined by newlines); 4.4 gives for a
-- comment of several lines an item with its first line, one item per line, and the whole
-- text again: the same lines, up to three times.
function M.comment_texts(infos)
    local out, seen = {}, {}
    for _, fi in ipairs(infos) do
        local text = tostring(fi.value)
        local start = 1
        while true do
            local nl = find(text, "\n", start, true)
            local line = sub(text, start, nl and nl - 1 or #text)
            if line ~= "" and not seen[line] then
                seen[line] = true
                out[#out + 1] = line
            end
            if nl == nil then break end
            start = nl + 1
        end
    end
    return out
end

-- How many "policy: explain:" lines (the statistics count them; first pass).
function M.count_explain(comments)
    local n = 0
    for _, text in ipairs(comments) do
        local start = 1
        while true do
            local at = find(text, "policy: explain:", start, true)
            if at == nil then break end
            if at == 1 or sub(text, at - 1, at - 1) == "\n" then n = n + 1 end
            start = at + 16
        end
    end
    return n
end

-- The line number of an older capture's comment ("swtpm log line N: ..."), or nil.
function M.log_line(comments)
    for _, text in ipairs(comments) do
        local n = match(text, "^swtpm log line (%d+)") or match(text, "connection opened for log line (%d+)")
        if n then return tonumber(n) end
    end
    return nil
end

-- Add the notes of a frame under item (ctx: tree.begin's context). Experts are added
-- whatever the tree (Expert Info counts them).
function M.add(ctx, item, comments)
    local f = M.f
    local list, extra = lines(comments, M.MAX_NOTES)
    for _, line in ipairs(list) do
        if sub(line, 1, 4) == "pcr:" then
            local it = ctx:add_value(item, f.pcr, 0, 0, line)
            if it then
                local n, index, bank, hex = match(line, "^pcr: extend #(%d+) PCR (%d+) (%w+) = (%x+)$")
                if n then
                    ctx:add_value(it, f.pcr_extend, 0, 0, tonumber(n))
                    ctx:add_value(it, f.pcr_index, 0, 0, tonumber(index))
                    ctx:add_value(it, f.pcr_bank, 0, 0, bank)
                    ctx:add_value(it, f.pcr_value, 0, 0, hex:lower())
                end
            end
        elseif sub(line, 1, 16) == "policy: explain:" then
            local text = match(line, "^policy: explain:%s*(.*)$")
            ctx:add_value(item, f.explain, 0, 0, text)
            ctx:expert(M.experts.explain, text)
        elseif sub(line, 1, 15) == "policy: digest " then
            local text = sub(line, 9)
            ctx:add_value(item, f.check, 0, 0, text)
            if sub(text, 1, 15) == "digest MISMATCH" then
                ctx:expert(M.experts.mismatch, text)
            end
        else
            ctx:add_value(item, f.note, 0, 0, line)
        end
    end
    if extra > 0 then
        ctx:expert(M.experts.many, string.format("%d more comment lines not shown", extra))
    end
end

return M
