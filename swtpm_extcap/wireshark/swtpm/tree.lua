-- swtpm/tree.lua: adding items to the protocol tree, only as many as the dissection needs.
--
-- What a Lua dissector pays is the call into Wireshark: a TvbRange, a tree item or a column
-- costs some thousand instructions each, far more than the Lua that decides what to add.
-- Wireshark says what a dissection needs (TreeItem:referenced): a field is referenced when
-- a display or read filter, a column, a coloring rule, a tap or -e names it, and everything
-- is when the tree is shown (details pane, -V, -T pdml/json/fields). So a dissection is in
-- one of three modes:
--   NONE  nothing of this protocol is needed (no tree, or a filter on other protocols): no
--         item at all;
--   SOME  (tshark) some fields are: only those, each asked once per pass (what a tshark pass
--         references never changes), directly under the frame's tree unless the filter names
--         the protocol itself (the field "tpm2" or "swtpm" that shares the protocol's name);
--   ALL   the tree is shown, or the GUI (whose dissections for the packet list, coloring,
--         filters and taps interleave, each with its own references): every item.
-- Items per frame are bounded (MAX_ITEMS); a frame with more gets one expert item instead.
local token, S = ...
if token ~= "swtpm-extcap" then return end

local M = {}

M.NONE, M.SOME, M.ALL = 0, 1, 2
M.MAX_ITEMS = 5000

M.GUI = gui_enabled and gui_enabled() or false

-- per tshark pass (first sight of the frames, later passes) and protocol
local passes = {}
function M.reset()
    passes = {}
end

local Ctx = {}
Ctx.__index = Ctx
M.Ctx = Ctx

-- What a dissection of protocol `name` needs (its Dissector: dissector; the field that shares
-- its name: alias) in tree: {mode=, visible=, proto= (its own item is wanted), ref= (field ->
-- referenced, SOME)}. first: the frame was not seen before (tshark's first pass). In tshark
-- the answer is kept for the pass; in the GUI it is asked each time (one record reused).
local gui_passes = {}
function M.pass(name, tree, dissector, alias, first)
    if M.GUI then
        local pass = gui_passes[name]
        if pass == nil then
            pass = { ref = {} }
            gui_passes[name] = pass
        end
        if tree:referenced(dissector) then
            pass.mode, pass.proto, pass.visible = M.ALL, true, tree.visible
        else
            pass.mode, pass.proto, pass.visible = M.NONE, false, false
        end
        return pass
    end
    local by_name = passes[first]
    if by_name == nil then
        by_name = {}
        passes[first] = by_name
    end
    local pass = by_name[name]
    if pass == nil then
        pass = { ref = {} }
        if not tree:referenced(dissector) then
            pass.mode = M.NONE
        elseif tree.visible then
            pass.mode, pass.visible, pass.proto = M.ALL, true, true
        else
            pass.mode = M.SOME
            pass.proto = tree:referenced(alias)
        end
        by_name[name] = pass
    end
    return pass
end

-- The context of a dissection (as pass(), with the message's bytes): ctx.root is where the
-- items go (the caller sets it to the protocol's item when it adds one). One context per
-- protocol, reused frame after frame (a Lua table costs thousands of instructions; a
-- dissection of a protocol never nests in itself).
local contexts = {}
function M.context(name, pass, tree, tvb, raw)
    local ctx = contexts[name]
    if ctx == nil then
        ctx = setmetatable({ name = name }, Ctx)
        contexts[name] = ctx
    end
    ctx.tvb, ctx.s, ctx.items, ctx.tree, ctx.root = tvb, raw, 0, tree, tree
    ctx.overflow, ctx.compat, ctx.compat_item = nil, nil, nil
    ctx.mode, ctx.visible, ctx.proto, ctx.ref = pass.mode, pass.visible, pass.proto, pass.ref
    return ctx
end

function M.begin(name, tree, dissector, alias, first, tvb, raw)
    return M.context(name, M.pass(name, tree, dissector, alias, first), tree, tvb, raw)
end

-- Whether a SOME pass wants more than `shallow` (a list of fields): any other of `all` is
-- referenced. Asked once per pass (a thousand calls, once).
function M.deep(pass, tree, all, shallow)
    local deep = pass.deep
    if deep == nil then
        local skip = {}
        for _, f in ipairs(shallow) do skip[f] = true end
        deep = false
        for _, f in ipairs(all) do
            if not skip[f] and tree:referenced(f) then deep = true break end
        end
        pass.deep = deep
    end
    return deep
end

-- Whether field f is wanted in this dissection.
function Ctx:wants(f)
    local mode = self.mode
    if mode == M.ALL then return true end
    if mode == M.NONE then return false end
    local r = self.ref[f]
    if r == nil then
        r = self.tree:referenced(f)
        self.ref[f] = r
    end
    return r
end

-- Whether one more item of field f goes into the tree (wanted, and under MAX_ITEMS).
local function admit(ctx, f)
    if not ctx:wants(f) then return false end
    local items = ctx.items + 1
    ctx.items = items
    if items > M.MAX_ITEMS then
        ctx.overflow = true
        return false
    end
    return true
end

-- Add field f over [off, off + len) of the message under parent. Returns the new item, or
-- nil when none was added (not wanted, too many items).
function Ctx:add(parent, f, off, len)
    if not admit(self, f) then return nil end
    return parent:add(f, self.tvb(off, len))
end

-- Same, with a value of our own (a generated field: no bytes of its own; len 0).
function Ctx:add_value(parent, f, off, len, value)
    if not admit(self, f) then return nil end
    local item
    if len == 0 and off == 0 then
        item = parent:add(f, value)  -- no TvbRange: offset 0, length 0 of the frame
    else
        item = parent:add(f, self.tvb(off, len), value)
    end
    if self.visible then item:set_generated() end
    return item
end

function Ctx:text(item, text)
    if item ~= nil and self.visible then item:append_text(text) end
end

-- An expert item: always (Expert Info counts them whatever the tree), on the protocol's
-- item or, without one, on the frame's tree.
function Ctx:expert(e, text)
    local where = self.root
    if text then where:add_proto_expert_info(e, text) else where:add_proto_expert_info(e) end
end

return M
