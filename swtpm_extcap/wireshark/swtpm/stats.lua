-- swtpm/stats.lua: per TPM command, how often it was sent, how it failed (by response code)
-- and how long the TPM took (min/mean/max from the request to its response).
--
-- Statistics > TPM commands (swtpm-extcap) (the GUI) and `tshark -z swtpm,commands` print the same
-- report. It is made from what the first pass over the file recorded (swtpm/state.lua), so
-- it costs nothing per frame and covers every frame of the file, whatever the display filter.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local M = {}
local state = S.state
local format, concat = string.format, table.concat

M.TAP = "swtpm,commands"
-- Wireshark 4.0 shows no MENU_STAT_GENERIC entry of a Lua script and takes an unsorted
-- entry's "/" literally: one plain entry in the Statistics menu
M.MENU = "TPM commands (swtpm-extcap)"

local function command_name(code, tpm12)
    if tpm12 then return S.tpm12.name(S.tpm12.ORD, code) end
    return S.T.constants.TPM_CC[code] or format("0x%08x", code)
end

local function rc_name(rc, tpm12)
    if tpm12 then return S.tpm12.name(S.tpm12.RC, rc) end
    local d = S.rc.decode(rc)
    return S.rc.text(d, rc, S.tpm12.RC)
end

-- The report's rows: one per command (TPM 2.0 and TPM 1.2), in order of first appearance.
function M.rows()
    local rows, by_key, order = {}, {}, {}
    local nums = {}
    for num in pairs(state.kind) do nums[#nums + 1] = num end
    table.sort(nums)
    local explained = 0
    for _, num in ipairs(nums) do
        local kind = state.kind[num]
        if not state.has(kind, state.CTRL) then
            local tpm12 = state.has(kind, state.TPM12)  -- the message's version
            local req = state.peer[num]
            local row12 = tpm12  -- the command's (a TPM 2.0 answers a TPM 1.2 probe as a TPM 2.0)
            if req ~= nil and state.has(kind, state.RESPONSE) then row12 = state.has(state.kind[req], state.TPM12) end
            local code = state.code[num]
            local key = (row12 and "1.2:" or "2.0:") .. tostring(code)
            local row = by_key[key]
            if row == nil then
                row = { name = code and command_name(code, row12) or "(no request)", tpm12 = row12,
                        count = 0, responses = 0, failed = 0, failures = {}, n = 0, sum = 0 }
                by_key[key] = row
                order[#order + 1] = row
            end
            if not state.has(kind, state.RESPONSE) then
                row.count = row.count + 1
            elseif not state.has(kind, state.CONTINUED) then
                row.responses = row.responses + 1
                local rc = state.rc[num]
                if rc ~= nil and rc ~= 0 then
                    row.failed = row.failed + 1
                    local name = rc_name(rc, tpm12)
                    row.failures[name] = (row.failures[name] or 0) + 1
                end
                if req ~= nil and state.time[req] ~= nil and state.time[num] ~= nil then
                    local dt = state.time[num] - state.time[req]
                    row.n = row.n + 1
                    row.sum = row.sum + dt
                    if row.min == nil or dt < row.min then row.min = dt end
                    if row.max == nil or dt > row.max then row.max = dt end
                end
            end
        end
        explained = explained + (state.explain[num] or 0)
    end
    return order, explained
end

local function ms(v)
    if v == nil then return "-" end
    return format("%.3f", v * 1000)
end

function M.report()
    local rows, explained = M.rows()
    local out = {}
    local requests, failed = 0, 0
    for _, r in ipairs(rows) do
        requests = requests + r.count
        failed = failed + r.failed
    end
    out[#out + 1] = "TPM commands (swtpm-extcap)"
    out[#out + 1] = format("%d requests, %d failed responses, %d policy explanations", requests, failed,
                           explained)
    out[#out + 1] = ""
    out[#out + 1] = format("%-36s %7s %7s %10s %10s %10s  %s", "Command", "Count", "Failed", "Min ms",
                           "Mean ms", "Max ms", "Failures by response code")
    for _, r in ipairs(rows) do
        local failures = {}
        for name, n in pairs(r.failures) do failures[#failures + 1] = format("%s x%d", name, n) end
        table.sort(failures)
        out[#out + 1] = format("%-36s %7d %7d %10s %10s %10s  %s", r.name .. (r.tpm12 and " (1.2)" or ""),
                               r.count, r.failed, ms(r.min), r.n > 0 and ms(r.sum / r.n) or "-",
                               ms(r.max), concat(failures, ", "))
    end
    out[#out + 1] = ""
    out[#out + 1] = format("policy: explain notes: %d", explained)
    return concat(out, "\n") .. "\n"
end

-- tshark -z swtpm,commands: the report after the last frame
if register_stat_cmd_arg then
    register_stat_cmd_arg(M.TAP, function()
        M.wanted = true  -- count the policy explanations of the comments (swtpm.lua)
        local listener = Listener.new("frame", nil)
        function listener.draw()
            io.write("\n" .. string.rep("=", 80) .. "\n" .. M.report() .. string.rep("=", 80) .. "\n")
        end
        M.listener = listener
    end)
end

-- Statistics > TPM commands (swtpm-extcap)
if gui_enabled and gui_enabled() and register_menu then
    register_menu(M.MENU, function()
        local win = TextWindow.new("TPM commands (swtpm-extcap)")
        win:set(M.report())
    end, MENU_STAT_UNSORTED)
end

return M
