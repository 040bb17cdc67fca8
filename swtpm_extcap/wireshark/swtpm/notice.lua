-- swtpm/notice.lua: "swtpm.notice", the frames a capture writes between records to say what
-- its source saw (swtpm_extcap/pcapng/notice.py): UDP 127.0.0.4:2325 -> 127.0.0.4:2325, the text
-- as payload (and as the frame comment). Today the SSH source's: the link went down, the link
-- is back (resumed, the log rotated meanwhile: nothing lost) or back with records that may be
-- missing. Each is an Expert Info warning; its text is the Info column.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local M = {}
local find = string.find

M.PORT = 2325

local p = Proto("swtpm.notice", "swtpm-extcap notice")
M.proto = p

local EVENT = { "link down", "link back", "records lost", "other" }
local f = {
    text = ProtoField.string("swtpm.notice.text", "Notice", "what the capture's source saw"),
    event = ProtoField.string("swtpm.notice.event", "Event",
                              "link down, link back, records lost (a gap in the log), other"),
    lost = ProtoField.bool("swtpm.notice.lost", "Records may be missing", base.NONE, nil, nil,
                           "the log's bytes between the link going down and coming back may be lost"),
}
p.fields = { f.text, f.event, f.lost }
local e = {
    notice = ProtoExpert.new("swtpm.notice.expert", "Capture notice", expert.group.SEQUENCE,
                             expert.severity.WARN),
}
p.experts = { e.notice }

-- the event a notice's text tells (the texts of swtpm_extcap/sources/ssh.py)
function M.event(text)
    if find(text, "may be missing", 1, true) then return EVENT[3] end
    if find(text, " went down ", 1, true) then return EVENT[1] end
    if find(text, " is back ", 1, true) then return EVENT[2] end
    return EVENT[4]
end

function p.dissector(tvb, pinfo, tree)
    local text = tvb:raw()
    local event = M.event(text)
    pinfo.cols.protocol = "swtpm-extcap"
    pinfo.cols.info = text
    local item = tree:add(p, tvb())
    item:append_text(": " .. event)
    item:add(f.text, tvb(), text)
    item:add(f.event, event)
    item:add(f.lost, event == EVENT[3])
    item:add_proto_expert_info(e.notice, text)
    return tvb:len()
end

DissectorTable.get("udp.port"):add(M.PORT, p)

return M
