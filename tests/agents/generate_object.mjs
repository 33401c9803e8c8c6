// The Vercel AI SDK's generateObject against SpaceAI: prints the object it got back as JSON.
// Usage: SPACEAI_BASE_URL=http://127.0.0.1:PORT/v1 SPACEAI_API_KEY=sk-space-... \
//        node generate_object.mjs MODEL [chat|responses]
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, jsonSchema } from "ai";

const [model, api = "chat"] = process.argv.slice(2);
const provider = createOpenAI({
  baseURL: process.env.SPACEAI_BASE_URL,
  apiKey: process.env.SPACEAI_API_KEY,
});
const schema = jsonSchema({
  type: "object",
  properties: { name: { type: "string" }, age: { type: "integer" } },
  required: ["name", "age"],
  additionalProperties: false,
});
const { object } = await generateObject({
  model: api === "responses" ? provider.responses(model) : provider.chat(model),
  schema,
  schemaName: "person",
  prompt: "Extract the person: John is 30 years old.",
  temperature: 0,
  maxOutputTokens: 120,
  maxRetries: 0,
});
process.stdout.write(JSON.stringify(object));
