// The Vercel AI SDK with its default OpenAI provider (`openai(model)` speaks the Responses API) against the
// gateway: generateText and streamText with a tool (multi-step: the tool runs, then the model answers), then a
// second turn built the way the SDK's docs show (`response.messages` appended): with `store` on by default
// the SDK sends its earlier answer back as an `item_reference`. Prints one JSON object for the test to check.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: process.env.SWITCHBOARD_BASE_URL, apiKey: process.env.SWITCHBOARD_API_KEY });
const model = openai(process.env.SWITCHBOARD_MODEL);
const prompt = process.env.SWITCHBOARD_PROMPT;
const ran = [];
const tools = {
  get_weather: tool({
    description: "The weather in a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      ran.push(city);
      return `sunny in ${city}`;
    },
  }),
};

const generated = await generateText({ model, tools, prompt, stopWhen: stepCountIs(3) });
const streamed = streamText({ model, tools, prompt, stopWhen: stepCountIs(3) });
const parts = [];
for await (const part of streamed.fullStream) {
  if (part.type === "error") throw part.error;
  parts.push(part.type);
}
const messages = [{ role: "user", content: "first question" }];
const first = await generateText({ model, messages });
messages.push(...first.response.messages, { role: "user", content: "second question" });
const second = await generateText({ model, messages });

console.log(JSON.stringify({
  ran,
  generate: {
    text: generated.text,
    steps: generated.steps.length,
    finishReason: generated.finishReason,
    toolCalls: generated.steps.flatMap((step) => step.toolCalls.map((call) => call.toolName)),
    responseId: generated.response.id,
    usage: generated.totalUsage,
  },
  stream: {
    text: await streamed.text,
    steps: (await streamed.steps).length,
    finishReason: await streamed.finishReason,
    parts: [...new Set(parts)],
  },
  turns: { first: first.text, second: second.text },
}));
